"""The fixtures live in tests/conftest.py (shared with tests/faults); re-exported for imports."""

from tests.conftest import EDGE_PORTS, NAMESPACE, TEST_ENV, WORKER_PORT, App

__all__ = ["EDGE_PORTS", "NAMESPACE", "TEST_ENV", "WORKER_PORT", "App"]
