"""Events the tickets service publishes (topic `tickets.v1`)."""
