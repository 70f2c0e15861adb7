"""Cryptography. ``primitives`` is the only module of mydrive that imports the
``cryptography`` package; ``keys`` is the user key hierarchy built on it.
"""
