"""I/O adapters of the archive: MongoDB persistence."""
