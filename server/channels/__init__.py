"""Payment channels: the adapter interface, notification signing, and the simulator."""
