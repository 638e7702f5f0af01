"""The envelope every policy document shares: apiVersion, kind, metadata, spec."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from meshctl.model.values import Name, Spec

API_VERSION = "meshctl/v1alpha1"


class Metadata(Spec):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Envelope(Spec):
    api_version: Literal["meshctl/v1alpha1"]
    metadata: Metadata
