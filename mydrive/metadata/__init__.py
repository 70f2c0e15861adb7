"""Metadata documents (user, file, tombstone, peer) in SQLite or CouchDB: one store
interface, the conflict policy, and CouchDB replication between peers.
"""
