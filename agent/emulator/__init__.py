"""A local stand-in for AWS IoT Device Defender: the MQTT responder (and, later, the control plane)."""
