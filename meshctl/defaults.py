"""Built-in defaults the policy does not spell out, in one place.

The model applies them to what a user left out, the compiler writes them into the manifest, and
everything downstream (runtime, rollout, render) reads the manifest: nobody else keeps a copy.
"""

from __future__ import annotations

GATE_WINDOW_MS = 10_000  # the rollout gate's window (Flagger's analysis interval)
GATE_MAX_ERROR_RATE = 1.0  # percent of 5xx
GATE_MAX_P99_MS = 500
CANARY = 1  # sidecars in the first wave
APP_PORT = 8080  # an app's port in a pod when the Service names none (render kubernetes)
NAMESPACE = "default"
MAX_GATEWAY_WORKERS = 64  # a Gateway's `workers`: the policy's bound, and the cap of `auto`
