"""The demo park's catalog file (``demo_park.toml``), shipped as package data.

The catalog's values and parser are pure and live in :mod:`actors.catalog`.
"""
