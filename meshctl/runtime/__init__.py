"""The local runtime: runs a compiled mesh on this machine (apps, sidecars, gateways).

`state` lays out the state directory, `ports` keeps port assignments stable, `topology` turns the
policy into instances, `plan` into processes and sidecar files, `supervisor` runs them (as a
detached daemon), `control` is what the CLI uses to start, stop and watch the daemon.
"""
