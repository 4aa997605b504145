"""The run database: its schema and records, the store, the one thread that owns the
engine's connection, the read-only access every reader shares, locks, backups and export.
"""
