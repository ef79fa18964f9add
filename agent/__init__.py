"""defender-agent: AWS IoT Device Defender metric reports from Linux gateways."""

__version__ = "0.2.0"
