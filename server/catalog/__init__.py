"""The ticket catalog: products, time slots and capacity, read from a TOML file."""
