"""The ports' implementations: MongoDB."""
