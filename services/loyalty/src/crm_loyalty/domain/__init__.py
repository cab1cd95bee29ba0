"""Pure rules of the loyalty service: no I/O, no FastStream, no PyMongo."""
