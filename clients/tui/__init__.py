"""The terminal programs' shared base: trio inside textual, error messages, a resilient link.

- :mod:`clients.tui.bridge`: :class:`~clients.tui.bridge.TrioApp`, a textual App that runs
  trio in guest mode on its asyncio loop;
- :mod:`clients.tui.messages`: a Chinese and an English message for every error code;
- :mod:`clients.tui.link`: :class:`~clients.tui.link.Link`, a connection that reconnects
  and gives every request a timeout, with a state for a status bar.
"""
