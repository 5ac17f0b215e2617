"""Orders: the pure order state machine and the actor that owns each order."""
