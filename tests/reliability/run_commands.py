"""Run the policy commands on one directory in this process, under the limits the parent set.

Usage: python -m tests.reliability.run_commands MESH_DIR OUT_DIR
Prints, as its last line, JSON: {"codes": {command: exit code}, "cpu_s": ..., "max_rss_bytes": ...}.
A bug anywhere is exit code 3 (the CLI's own error boundary) or an uncaught exception here,
which the parent sees as a traceback.
"""

from __future__ import annotations

import json
import resource
import sys

from meshctl.cli.main import main


def commands(mesh: str, out: str) -> dict[str, list[str]]:
    return {
        "validate": ["validate", mesh, "--format", "json"],
        "compile": ["compile", mesh, "--out", out],
        "diff": ["diff", "--dir", mesh, "--no-cache"],
        "explain": ["explain", "--dir", mesh, "--from", "shop", "GET", "http://shop/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"],
        "test": ["test", mesh],
    }


if __name__ == "__main__":
    codes = {name: main(argv) for name, argv in commands(sys.argv[1], sys.argv[2]).items()}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "codes": codes,
        "cpu_s": usage.ru_utime + usage.ru_stime + kids.ru_utime + kids.ru_stime,
        "max_rss_bytes": max(usage.ru_maxrss, kids.ru_maxrss) * 1024,
    }))
