"""Tickets: their codes, and (with the gates) the rules of admission."""
