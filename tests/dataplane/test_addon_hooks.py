"""The addon's hooks in-process (mitmproxy.test.taddons / tflow), configured through its options.

Beside the live tests: these run the real MeshAddon hooks on mitmproxy's own test flows, with
no process and no network, for the answers a sidecar gives by itself; and they show that a bad
config is refused with OptionsError while the last good one stays.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from meshctl.contract import (
    AbortFault,
    CompiledDirectResponse,
    CompiledFault,
    CompiledRedirect,
    CompiledRouteRule,
    CompiledStringMatch,
    RequestMatch,
    dump_json,
)
from proxy_addon.script import MeshScript
from tests.support.configs import destination, service_config, split
from tests.support.procs import bindings_for


def prefix(p: str) -> tuple[RequestMatch, ...]:
    return (RequestMatch(path=CompiledStringMatch(prefix=p)),)


CONFIG = service_config(
    "web",
    (
        destination("reviews", rules=(
            CompiledRouteRule(name="moved", matches=prefix("/old"), redirect=CompiledRedirect(path="/new", status=308)),
            CompiledRouteRule(name="teapot", matches=prefix("/tea"),
                              respond=CompiledDirectResponse(status=418, body="short")),
            split("reviews", {"v1": 100}, name="broken", matches=prefix("/broken"),
                  fault=CompiledFault(abort=AbortFault(status=503, percent=100))),
            split("reviews", {"v1": 100}),
        )),
    ),
    denied=("ratings",),
)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config, bindings = tmp_path / "config.json", tmp_path / "bindings.json"
    config.write_text(dump_json(CONFIG))
    bindings.write_text(dump_json(bindings_for(inbound=False)))
    return config, bindings


def outbound_flow(script: MeshScript, method: str, url: str) -> object:
    spec = next(s for s, role in script.roles.items() if role == "outbound")  # mitmproxy's regular mode
    flow = tflow.tflow(req=tutils.treq(method=method.encode(), headers=()))
    flow.request.url = url
    flow.request.headers["host"] = flow.request.host
    flow.client_conn.proxy_mode = ProxyMode.parse(spec)
    return flow


def run_hooks(script: MeshScript, flow) -> None:  # type: ignore[no-untyped-def]
    script.requestheaders(flow)
    asyncio.run(script.request(flow))
    script.response(flow)


@pytest.mark.parametrize(
    ("method", "url", "status", "flags"),
    [
        ("GET", "http://ratings/r", 403, "RBAC"),  # denied at the source
        ("GET", "http://nowhere/", 502, "NR"),  # not a mesh service, registry-only
        ("GET", "http://reviews/old/page", 308, None),
        ("GET", "http://reviews/tea", 418, None),
        ("POST", "http://reviews/broken", 503, "FI"),
    ],
)
def test_hooks_answer_as_the_decision_says(
    files: tuple[Path, Path], method: str, url: str, status: int, flags: str | None
) -> None:
    script = MeshScript()
    with taddons.context(script) as tctx:
        tctx.configure(script, meshctl_config=str(files[0]), meshctl_bindings=str(files[1]))
        flow = outbound_flow(script, method, url)
        run_hooks(script, flow)
        assert flow.response is not None and flow.response.status_code == status
        assert flow.response.headers.get("x-mesh-response-flags") == flags
        if status == 308:
            assert flow.response.headers["location"] == "http://reviews/new"
        assert script.addon is not None and script.addon.in_flight == 0  # the response hook ran
        assert "meshctl" not in flow.metadata


def test_a_bad_config_raises_options_error_and_the_last_good_stays(files: tuple[Path, Path], tmp_path: Path) -> None:
    script = MeshScript()
    with taddons.context(script) as tctx:
        with pytest.raises(exceptions.OptionsError, match="set both"):
            tctx.configure(script, meshctl_config=str(files[0]))
        tctx.configure(script, meshctl_config=str(files[0]), meshctl_bindings=str(files[1]))
        assert script.rt is not None and script.rt.snapshot.config.revision == "r1"
        truncated = tmp_path / "truncated.json"
        truncated.write_text(dump_json(CONFIG)[:200])
        with pytest.raises(exceptions.OptionsError, match="truncated.json: not valid JSON"):
            tctx.configure(script, meshctl_config=str(truncated))
        foreign = tmp_path / "foreign.json"
        foreign.write_text(json.dumps({**json.loads(dump_json(CONFIG)), "schema_version": "x/v9"}))
        with pytest.raises(exceptions.OptionsError, match="unknown schema_version"):
            tctx.configure(script, meshctl_config=str(foreign))
        assert tctx.options.meshctl_config == str(files[0])  # mitmproxy rolled the option back
        assert script.rt.snapshot.config.revision == "r1"  # and the sidecar kept its config
        newer = tmp_path / "newer.json"
        newer.write_text(dump_json(CONFIG.model_copy(update={"revision": "r2"})))
        tctx.configure(script, meshctl_config=str(newer))
        assert script.rt.snapshot.config.revision == "r2"
        flow = outbound_flow(script, "GET", "http://reviews/tea")
        run_hooks(script, flow)
        assert flow.response is not None and flow.response.status_code == 418


def test_a_changed_file_reloads_through_the_same_read_and_a_bad_one_is_refused_once(
    files: tuple[Path, Path],
) -> None:
    script = MeshScript()
    refusals: list[str] = []
    script.source.refused = refusals.append
    with taddons.context(script) as tctx:
        tctx.configure(script, meshctl_config=str(files[0]), meshctl_bindings=str(files[1]))
        assert script.rt is not None and script.rt.snapshot.config.revision == "r1"
        script.source.check()  # nothing changed: nothing read
        assert script.rt.snapshot.config.revision == "r1" and refusals == []
        files[0].write_text(dump_json(CONFIG.model_copy(update={"revision": "r2"})) + " ")
        script.source.check()
        assert script.rt.snapshot.config.revision == "r2"
        files[0].write_text(dump_json(CONFIG)[:100])
        script.source.check()
        script.source.check()  # the same bad file is not tried again
        assert len(refusals) == 1 and "config.json: not valid JSON" in refusals[0]
        assert script.rt.snapshot.config.revision == "r2"  # the last good config stays
        files[0].write_text(dump_json(CONFIG.model_copy(update={"revision": "r3"})))
        script.source.check()
        assert script.rt.snapshot.config.revision == "r3"


def test_the_sidecar_server_reads_its_config_through_the_options(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    from proxy_addon.server import Sidecar

    async def first_load() -> Sidecar:
        sidecar = Sidecar(files[0], files[1], tmp_path)
        from mitmproxy import options
        from mitmproxy.master import Master

        master = Master(options.Options())
        master.addons.add(sidecar.source)
        master.options.update(meshctl_config=str(files[0]), meshctl_bindings=str(files[1]))
        return sidecar

    sidecar = asyncio.run(first_load())
    assert sidecar.rt.snapshot.config.revision == "r1"
    assert set(sidecar.roles.values()) == {"outbound"}
    assert sidecar.source.paths == files
