"""Sinks: processes that turn topics into the read side (MongoDB)."""
