"""`crm`: the operators' command line for the CRM suite."""
