"""Pure rules of the tickets service: no I/O, no FastStream, no PyMongo."""
