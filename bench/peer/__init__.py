"""The peer the benchmark compares against: python-socketio with its Redis manager."""
