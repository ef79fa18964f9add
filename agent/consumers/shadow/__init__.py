"""The named shadow: ``state.reported`` for fleet indexing, the desired state for remote config (docs/FLEET.md)."""
