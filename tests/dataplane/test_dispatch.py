"""The lean hook dispatch: the arguments mitmproxy would pass, errors logged as mitmproxy logs them."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mitmproxy import exceptions, hooks
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.proxy.server_hooks import ClientConnectedHook
from mitmproxy.test import taddons, tflow

from proxy_addon.dispatch import LeanAddonManager, hook_args


@pytest.mark.parametrize("event", [
    HttpRequestHook(tflow.tflow()), HttpResponseHook(tflow.tflow(resp=True)),
    ClientConnectedHook(tflow.tclient_conn()), hooks.UpdateHook([tflow.tflow()]),
])
def test_hook_args_are_mitmproxys(event: hooks.Hook) -> None:
    assert hook_args(event) == event.args()
    assert hook_args(event) == event.args()  # from the per-class cache


class Boom:
    def request(self, flow: object) -> None:
        raise ValueError("boom")


class Seen:
    def __init__(self, name: str) -> None:
        self.name = name  # mitmproxy refuses two addons of one name
        self.flows: list[object] = []

    async def request(self, flow: object) -> None:
        self.flows.append(flow)


class Halt:
    def request(self, flow: object) -> None:
        raise exceptions.AddonHalt()


class Refuses:
    def request(self, flow: object) -> None:
        raise exceptions.OptionsError("bad option")


def test_a_failing_handler_is_logged_and_the_next_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        with taddons.context() as tctx:
            manager = LeanAddonManager(tctx.master)
            seen, after_halt = Seen("seen"), Seen("after-halt")
            manager.add(Boom(), seen, Halt(), after_halt)
            flow = tflow.tflow()
            with caplog.at_level(logging.ERROR):
                await manager.trigger_event(HttpRequestHook(flow))
            assert seen.flows == [flow]
            assert after_halt.flows == []  # AddonHalt stops the chain
            assert "Addon error: boom" in caplog.text
            manager.add(Refuses())
            manager.remove(manager.get("halt"))
            with pytest.raises(exceptions.OptionsError):
                await manager.trigger_event(HttpRequestHook(flow))

    asyncio.run(run())
