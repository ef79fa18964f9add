"""The Device Defender sink: reports stored under the backlog policy, (re)sent, settled by the replies."""
