"""Events of the member system (topic `members.v1`)."""
