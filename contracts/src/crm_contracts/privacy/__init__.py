"""Events every service publishes about personal data (topic `privacy.v1`)."""
