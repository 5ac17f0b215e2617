"""Orders: a pure state machine, the side effects it asks for, and the actor that owns each order.

The pure core (no I/O, no clock, no randomness):

- ``state``: the order and its records; ``commands``: what can be asked, with
  the outside facts a rule needs; ``events``: what happened;
- ``rules``: the named rules, each written once (a requested line, a capture,
  a staff refund); ``domain``: ``decide`` and ``evolve``, and the front that
  re-exports the names above;
- ``effects``: ``react``, the side effects a committed event asks for, as
  data (refunds and payment closes for the outbox, pushes, ticket-book
  updates); ``postings``: the ledger lines of each money event.

The shell: ``actor`` (``OrderActor``), which depends only on the Protocols in
``interfaces`` (``OrderStore``, ``OrderEffects``); server/ implements them.
"""
