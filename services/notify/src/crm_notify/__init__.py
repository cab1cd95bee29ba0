"""The notify service: messages to customers and staff, with consent and quiet hours."""
