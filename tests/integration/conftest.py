"""The fixtures live in tests/conftest.py (shared with tests/faults); re-exported for imports."""

from tests.conftest import EDGE_PORTS, TEST_ENV, App

__all__ = ["EDGE_PORTS", "TEST_ENV", "App"]
