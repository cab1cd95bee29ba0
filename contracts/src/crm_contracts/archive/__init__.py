"""Events the archive service publishes (topic `archive.v1`)."""
