"""Relations: maintenance plans, follow-up tasks and agreement customers (协议客户)."""
