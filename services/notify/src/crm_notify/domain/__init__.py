"""Pure rules of the notify service: no I/O, no FastStream, no PyMongo."""
