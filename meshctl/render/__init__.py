"""Render compiled policy into another runtime's files (Kubernetes manifests)."""
