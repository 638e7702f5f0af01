"""Helpers shared by the test suites: free ports, real sidecar and app processes, configs."""
