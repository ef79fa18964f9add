"""Violation events of the on-device behaviors: the consumer and the exec hook."""
