"""Producer, consumer and partitioner of the embedded API."""
