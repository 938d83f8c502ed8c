"""Tiered storage: sealed segments copied to an object store, read back transparently.

See ``docs/architecture.md`` section 3b.
"""
