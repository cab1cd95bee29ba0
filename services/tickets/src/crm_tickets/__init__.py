"""The tickets service: complaint handling (投诉管理) with SLA clocks and escalation."""
