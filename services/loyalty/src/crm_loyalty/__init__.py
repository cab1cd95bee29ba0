"""The loyalty service: points (积分): ledger, tiers, redemption, expiry, refunds."""
