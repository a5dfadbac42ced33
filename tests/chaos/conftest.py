"""The chaos tier uses the e2e tier's client of the Kubernetes API emulator."""

from e2e.conftest import api_client

__all__ = ["api_client"]
