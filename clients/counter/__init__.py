"""``scenic counter``: the cashier's screen (docs/counter.md).

The pure parts (money, receipts, the shift report's text) live beside the
textual screens that use them, so they are tested without a terminal.
"""
