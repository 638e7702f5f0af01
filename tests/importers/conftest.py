"""The data-plane fixtures (two app versions, one sidecar in front) for importer tests."""

from tests.dataplane.conftest import apps, sidecar

__all__ = ["apps", "sidecar"]
