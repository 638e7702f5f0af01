"""The compiled output's JSON Schemas (schemas/manifest, sidecar-config, runtime-bindings): what CI
tools check a compiled directory against. Real `meshctl compile` output validates; the
mistakes a hand-edited or foreign directory has do not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from meshctl.contract import TlsFiles, dump_json
from tests.conftest import REPO
from tests.support.meshdir import compiled as compile_to
from tests.support.procs import bindings_for


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((REPO / "schemas" / name).read_text()))


MANIFEST, SIDECAR, BINDINGS = (validator(n) for n in (
    "manifest.schema.json", "sidecar-config.schema.json", "runtime-bindings.schema.json"))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_to(REPO / "mesh.d", tmp_path_factory.mktemp("compiled") / "out")


def errors(v: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [e.message for e in v.iter_errors(document)]


def test_a_compiled_directory_validates(compiled: Path) -> None:
    manifest = json.loads((compiled / "manifest.json").read_text())
    assert errors(MANIFEST, manifest) == []
    assert manifest["sidecars"] and manifest["services"]
    for entry in manifest["sidecars"].values():
        assert errors(SIDECAR, json.loads((compiled / entry["file"]).read_text())) == []


def test_runtime_bindings_validate() -> None:
    tls = TlsFiles(cert_file="c.pem", key_file="k.pem", ca_file="ca.pem")
    for bindings in (bindings_for(), bindings_for(inbound=False).model_copy(update={"tls": tls})):
        assert errors(BINDINGS, json.loads(dump_json(bindings))) == []
    assert errors(BINDINGS, {"instance": "x"})  # no listeners


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(manifest_version="meshctl.dev/manifest/v9"), "is not one of"),
        (lambda m: m.update(schema_version="meshctl.dev/sidecar/v0"), "is not one of"),
        (lambda m: next(iter(m["sidecars"].values())).pop("sha256"), "'sha256' is a required property"),
        (lambda m: m["services"][0].update(replicas_typo=1), "Additional properties"),
        (lambda m: m["rollout"]["gate"].update(window_ms="30s"), "is not of type 'integer'"),
        (lambda m: m.pop("revision"), "'revision' is a required property"),
        (lambda m: m["gateways"][0].update(workers=0), "is not valid under any of the given schemas"),
    ],
    ids=["manifest version", "config version", "no hash", "unknown field", "duration as text", "no revision",
         "no workers"],
)
def test_a_broken_manifest_does_not(compiled: Path, change: Any, message: str) -> None:
    manifest = json.loads((compiled / "manifest.json").read_text())
    change(manifest)
    found = errors(MANIFEST, manifest)
    assert any(message in e for e in found), found


def test_a_foreign_sidecar_config_does_not(compiled: Path) -> None:
    manifest = json.loads((compiled / "manifest.json").read_text())
    config = json.loads((compiled / next(iter(manifest["sidecars"].values()))["file"]).read_text())
    assert errors(SIDECAR, {**config, "schema_version": "meshctl.dev/sidecar/v9"})
    assert errors(SIDECAR, {**config, "routes_typo": []})
