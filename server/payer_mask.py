"""How a payer's channel identifier is shown: masked, everywhere we show it.

A channel names the person who paid: WeChat Pay an ``openid`` (28
characters, e.g. ``o6_bmjrPTlm6_2sgVt7hMZOPfL2M``), Alipay a buyer id
(``2088`` and 12 digits) or a login (``159****5620``, already masked by
Alipay). The service desk, the reports and the logs show one only through
:func:`mask_payer`; the server never stores one (the desk reads it from the
channel's query answer and masks it before anything else sees it).
"""

from __future__ import annotations

#: identifiers shorter than this show nothing of themselves at all
MASK_MIN_LENGTH = 12
#: what stands for the hidden middle
MASK = "***"
KEEP_HEAD = 4
KEEP_TAIL = 2


def mask_payer(identifier: str | None) -> str | None:
    """``identifier`` as we show it: its first 4 and last 2 characters around ``***``.

    ``o6_bmjrPTlm6_2sgVt7hMZOPfL2xk`` shows as ``o6_b***xk``; an identifier
    of fewer than 12 characters shows as ``***`` alone (so at most half of a
    short one could ever show); ``None`` or empty stays ``None``. The result
    is never longer than 9 characters and never the identifier itself.
    """
    if not identifier:
        return None
    if len(identifier) < MASK_MIN_LENGTH:
        return MASK
    return identifier[:KEEP_HEAD] + MASK + identifier[-KEEP_TAIL:]
