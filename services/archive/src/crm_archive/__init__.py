"""The archive service: the customer ledger (客户档案)."""
