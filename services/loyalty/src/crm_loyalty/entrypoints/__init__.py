"""Kafka subscribers and HTTP routes: translate, then call a handler."""
