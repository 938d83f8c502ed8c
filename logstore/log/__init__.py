"""The storage engine: SQLite segments, partition logs, retention."""
