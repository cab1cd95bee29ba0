"""Events the loyalty service publishes (topic `loyalty.v1`)."""
