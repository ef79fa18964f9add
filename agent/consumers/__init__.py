"""The consumers of a checked round: Device Defender, topic sinks, textfile sinks and violation events.

Each is one module that owns what it stores in the round's transaction, what it does after the commit,
its delivery and retry state, its health and status; the loop iterates over them (agent.consumers.base)."""
