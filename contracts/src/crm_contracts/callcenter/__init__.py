"""Events of the call-center system (topic `callcenter.v1`)."""
