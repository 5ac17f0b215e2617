"""The trio client library and the kiosk and counter programs built on it."""
