"""Compile a valid typed policy into one SidecarConfig per service and per gateway."""
