"""I/O adapters of the loyalty service."""
