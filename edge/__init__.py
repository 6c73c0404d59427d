"""Edge nodes: hold WebSocket sessions, authenticate them, and only talk to Kafka (and Redis)."""
