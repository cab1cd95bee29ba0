"""Pure rules of the customer ledger: no I/O, no FastStream, no PyMongo."""
