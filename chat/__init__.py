"""Shared core of the chat platform: settings, the wire protocol, Kafka record shapes."""
