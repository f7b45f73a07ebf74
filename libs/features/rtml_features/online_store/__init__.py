"""Online stores: where the latest feature values of each entity are served from."""
