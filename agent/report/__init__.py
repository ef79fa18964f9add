"""Device Defender report model, rules, encoder and document validator."""
