"""Reconciliation: what a channel's bill says against what the books here say.

Pure (no I/O, no clock): ``model`` holds the facts on each side and the
differences; ``rules`` classifies a business date's differences and says
which are safe to fix (and how: through the owner's actor, as live traffic
would) and which are listed for a person. The server's
``server/reconciliation.py`` gathers the facts, carries the fixes out and
stores each run.
"""
