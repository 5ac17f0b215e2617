"""The gate actor: one per gate, owning its mode and the passages it waits for."""
