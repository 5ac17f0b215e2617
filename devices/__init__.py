"""Serial device drivers, their simulators over pseudo-terminals, and the gate agent."""
