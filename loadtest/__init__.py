"""Load generators and benchmarks that drive a running server over loopback."""
