"""Events of the order system (topic `orders.v1`)."""
