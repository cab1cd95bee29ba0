"""Events the notify service publishes (topic `notify.v1`)."""
