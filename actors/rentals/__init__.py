"""Rentals and their deposits: a pure state machine, the effects it asks for, and the actor.

The pure core (no I/O, no clock, no randomness):

- ``state``: the rental, its units, its payments and its deposit hold (a
  two-phase transfer); ``commands``: what can be asked, with the outside
  facts a rule needs; ``events``: what happened;
- ``rules``: the named rules, each written once (the lines, a bundle's
  coverage, a capture, a voucher, a pickup, a return); ``pricing`` and
  ``settlement``: the arithmetic of usage, penalties and how charges meet
  the hold; ``vouchers``: the signed voucher codes;
- ``domain``: ``decide`` and the front that re-exports the names above;
  ``money``: what the money commands mean; ``evolution``: ``evolve``;
- ``effects``: ``react``, the side effects a committed event asks for, as
  data (channel work for the outbox, pushes; ``pushes`` builds their
  payloads); ``postings``: the ledger
  lines and off-ledger memos of each money event; ``inventory``: what
  events do to units' runtime states.

The shell: ``actor`` (``DepositActor``), which depends only on the
Protocols in ``interfaces`` (``DepositStore``, ``DepositEffects``); server/
implements them.
"""
