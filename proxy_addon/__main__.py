"""`python -OO -m proxy_addon --config FILE --bindings FILE [--confdir DIR]`: run one sidecar.

This is what `meshctl sidecar` executes: a plain argparse entry point, so the process can
run under `-OO` (mitmproxy's hot path is full of asserts; docstrings cost memory) and never
imports the CLI.
Exit codes: 0 after a clean drain, 2 for a config or bindings file that cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshctl sidecar")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--bindings", required=True, type=Path)
    parser.add_argument("--confdir", type=Path, default=None)
    args = parser.parse_args(argv)
    from proxy_addon.lean import cache_optimized_bytecode
    from proxy_addon.patches import skip_default_addons

    cache_optimized_bytecode()
    skip_default_addons()
    from proxy_addon.errorpage import install_error_pages

    install_error_pages()
    from proxy_addon.server import serve

    # the pair is read (and a bad one refused, exit 2) through the sidecar's mitmproxy options
    return serve(args.config, args.bindings, args.confdir)


if __name__ == "__main__":
    sys.exit(main())
