"""Validation: schema and semantic checks that turn policy documents into diagnostics."""
