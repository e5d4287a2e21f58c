"""The fleet: discovery (the customers read from the cluster), its rules, syncs and the customer inventory."""
