"""Promotion of candidates to serving: gate, aliases, and (later) serving slots and rollback."""
