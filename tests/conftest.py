"""Fixtures for the pipeline tests; the helpers live in harness.py."""
# Fixtures are found by name: pipeline, the session's PostgreSQL (pg), and
# the session hook that stops it.
from harness import _stop_postgres_at_exit, pg, pipeline  # noqa: F401
