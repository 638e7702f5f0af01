"""meshctl: a GitOps service mesh. Policy lives in git as YAML; mitmproxy sidecars enforce it."""

__version__ = "0.1.0"
