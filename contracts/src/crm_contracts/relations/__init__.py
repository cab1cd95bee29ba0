"""Events the relations service publishes (topic `relations.v1`)."""
