"""`meshctl dashboard`: a live service graph, per-service A/B view, rollouts and explain in a browser.

The server (aiohttp, `server.py`) samples the running mesh into a short in-memory history
(`sampler.py`: the sidecars' admin endpoints, or Prometheus) and turns it into JSON views
(`graph.py`, `views.py`); the page (`static/`, built from `frontend/`) draws them.
"""
