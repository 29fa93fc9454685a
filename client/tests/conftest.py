"""Fixtures for the client's tests; the helpers live in clienthelpers.py (a
module of its own, so that `tests/` and `client/tests/` can run in one pytest
session without two modules named conftest clashing)."""
from clienthelpers import agent, env, server, short_dir  # noqa: F401  (fixtures, found by name)
