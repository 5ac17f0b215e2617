"""The actor runtime and the entity actors: one actor owns each gate, order, ticket and deposit."""
