"""Fixtures for the pipeline tests; the helpers live in harness.py."""
from harness import pipeline  # noqa: F401  (a fixture, found by name)
