"""`python -OO -m proxy_addon --config FILE --bindings FILE [--confdir DIR]`: run one sidecar.

This is what `meshctl sidecar` executes: a plain argparse entry point, so the process can
run under `-OO` (mitmproxy's hot path is full of asserts; docstrings cost memory) and never
imports the CLI. The local runtime usually forks sidecars from a warm fork server
(`proxy_addon.forkserver`), which has run `warm()` once and calls `main` in each child.
Exit codes: 0 after a clean drain, 2 for a config or bindings file that cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def warm() -> None:
    """Everything a sidecar does before it reads its config (idempotent): patches, imports."""
    from proxy_addon.lean import cache_optimized_bytecode
    from proxy_addon.patches import skip_default_addons, trust_own_ca_key

    cache_optimized_bytecode()
    skip_default_addons()
    trust_own_ca_key()
    from proxy_addon.errorpage import install_error_pages

    install_error_pages()
    import proxy_addon.reload
    import proxy_addon.server  # noqa: F401
    from proxy_addon.h2c import install_stream_recovery

    # It checks the source of ten mitmproxy functions first (~20 ms): once per fork server,
    # not once per forked sidecar.
    install_stream_recovery()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshctl sidecar")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--bindings", required=True, type=Path)
    parser.add_argument("--confdir", type=Path, default=None)
    args = parser.parse_args(argv)
    warm()
    from proxy_addon.server import serve

    # the pair is read (and a bad one refused, exit 2) through the sidecar's mitmproxy options
    return serve(args.config, args.bindings, args.confdir)


if __name__ == "__main__":
    sys.exit(main())
