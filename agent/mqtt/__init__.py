"""The MQTT link (awscrt, mutual TLS), the session the loop keeps on it, and topic names."""
