"""Tickets: their codes, the entry rules, the ticket as a pure state machine, and its actor.

- ``codes.py``: what a ticket's QR holds (HMAC tag online, Ed25519 offline);
- ``rules.py``: the entry rules: a scan's verdict, gate modes first;
- ``domain.py``: commands, events, ``decide``, ``evolve``, ``react``, the
  ticket's use (an entry, an exit, a give-back) and the offline merge;
- ``book.py``: the warm tickets the inline actors read their state from;
- ``actor.py``: the thin ``TicketActor`` shell and the interfaces it needs
  (``TicketStore``, ``AfterCommit``), implemented in server/.
"""
