"""I/O adapters of the tickets service."""
