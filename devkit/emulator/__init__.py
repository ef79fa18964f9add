"""Local stand-ins for AWS IoT: the Device Defender responder and the control plane."""
