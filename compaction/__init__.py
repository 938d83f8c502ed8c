"""Log compaction (not implemented yet: see the log-compaction issue)."""
