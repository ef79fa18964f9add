from tests.delivery.conftest import broker, pki, responder  # noqa: F401  (shared fixtures)
