"""Kafka subscribers and HTTP routes: translate, call a handler, command or query."""
