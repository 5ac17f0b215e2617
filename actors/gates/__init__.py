"""Gates: the gate as a pure state machine (``domain.py``) and its actor shell (``actor.py``).

The domain holds the passages a gate waits for, mode changes, scans of forged
codes and zone occupancy; the shell's interfaces (``GateStore``,
``GateOutside``) are implemented in server/.
"""
