"""Where a checked round goes besides (or instead of) Device Defender: a topic of the user's choice, a textfile.

Pure parts (the flat document, the Prometheus text, the topic rules) sit beside the
textfile's one write; delivery of topic messages goes through the one durable outbox
(:mod:`agent.outbox.messages`).
"""
