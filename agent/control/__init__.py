"""The AWS IoT control plane: bootstrap of custom metric definitions and values read-back (boto3)."""
