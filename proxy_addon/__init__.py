"""The meshctl sidecar: a mitmproxy 12 addon that enforces one compiled `SidecarConfig`.

Imports mitmproxy, aiohttp, pydantic, prometheus_client and `meshctl.contract` only; never the
CLI, the policy model, YAML, Jinja or jsonschema. Pure decision modules (`routing`, `access`,
`retry`) import no mitmproxy, so `meshctl explain` reuses them.
"""
