"""The stream topology: Faust agents that own all chat state (see docs/topology.md)."""
