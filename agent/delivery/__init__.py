"""Delivery: the durable outbox and ledger, report ids, reply parsing and the MQTT link."""
