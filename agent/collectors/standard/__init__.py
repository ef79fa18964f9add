"""Standard Device Defender metrics: listening ports, TCP connections, network counters."""
