"""One import: read the inputs, convert, check the result validates, write it (or nothing)."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Literal, get_args

from meshctl.importers import emit
from meshctl.importers.kube import index
from meshctl.importers.read import GATEWAY_API_KINDS, ISTIO_KINDS, read_objects
from meshctl.importers.report import ImportReport

ImportSource = Literal["istio", "gateway-api"]  # what `meshctl import` takes (a typed choice)
SOURCES: tuple[str, ...] = get_args(ImportSource)


def import_policy(source: ImportSource, inputs: list[FsPath], out_dir: FsPath) -> ImportReport:
    """Convert `inputs`; when nothing is wrong with them, write the mesh.d files to `out_dir`."""
    report = ImportReport()
    wanted = ISTIO_KINDS if source == "istio" else GATEWAY_API_KINDS
    objects = read_objects(inputs, wanted, report)
    kube = index(objects, report)
    if source == "istio":
        from meshctl.importers.istio import import_istio

        output = import_istio(objects, kube, report)
    else:
        from meshctl.importers.gateway_api import import_gateway_api

        output = import_gateway_api(objects, kube, report)
    if report.errors:
        return report
    files = emit.render(output)
    emit.check(files, report)
    if not report.errors:
        emit.write(files, out_dir, report)
    return report
