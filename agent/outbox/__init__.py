"""The durable outbox: one SQLite file in state_dir holding pending reports, queued messages, the ledger,
counters and the status meta, under one admission policy."""
