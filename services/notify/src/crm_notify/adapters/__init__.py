"""I/O adapters of the notify service."""
