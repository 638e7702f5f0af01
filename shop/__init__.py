"""The example shop the repository's `mesh.d/` runs: small aiohttp apps, one module per service.

Each app reads PORT, SERVICE, VERSION and HTTP_PROXY from its environment and calls other
services as `http://<service>/...` through its sidecar's outbound proxy.
"""
