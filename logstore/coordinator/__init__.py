"""Group and transaction coordinators (not implemented yet: see the consumer-group and
exactly-once issues)."""
