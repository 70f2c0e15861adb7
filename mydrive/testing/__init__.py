"""Helpers for tests, the simulator and the chaos harness: seeded fault hooks and the
in-memory transport. The product runs without them; they are switched on explicitly.
"""
