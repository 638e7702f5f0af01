"""An apply in progress, as a small JSON file others can read (`rollout.json` in the state dir).

Rewritten atomically at each step (waves, confirmation, every gate tick, the verdict), so a
reader such as `meshctl dashboard` sees the rollout live and never a half-written file. The
writer's pid is in the file: a reader treats a "running" file whose writer died as ended.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from meshctl.fsio import write_atomic
from meshctl.rollout.planning import RolloutPlan
from meshctl.runtime.metrics import Window
from meshctl.runtime.state import StateDir

FILE = "rollout.json"
VERSION = "1"  # of the format below; a reader ignores a file of another version


def wave_label(index: int, count: int) -> str:
    return "canary" if index == 0 and count > 1 else f"wave {index + 1}"


class ProgressFile:
    def __init__(self, state: StateDir, plan: RolloutPlan, action: str) -> None:
        self.path = state.root / FILE
        gate = plan.gate
        self.data: dict[str, Any] = {
            "version": VERSION, "action": action, "base": plan.base, "target": plan.target, "pid": os.getpid(),
            "started_at": time.time(), "status": "running", "message": "",
            "added": plan.added, "removed": plan.removed,
            "gate": {"window_s": gate.window_ms / 1000, "max_error_rate": gate.max_error_rate,
                     "max_p99_ms": gate.max_p99_ms},
            "waves": [
                {"label": wave_label(i, len(plan.waves)), "sidecars": wave, "status": "pending",
                 "confirm_s": None, "gate": None}
                for i, wave in enumerate(plan.waves)
            ],
        }
        self._write()

    def _write(self) -> None:
        self.data["updated_at"] = time.time()
        try:
            write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        except OSError:
            pass  # progress is for watchers: never what fails an apply

    def _wave(self, label: str) -> dict[str, Any]:
        """The wave of that label; a step without a planned wave (the gate of restarted
        instances) is added as one, so its gate numbers show too."""
        found = next((w for w in self.data["waves"] if w["label"] == label), None)
        if found is None:
            found = {"label": label, "sidecars": [], "status": "pending", "confirm_s": None,
                     "gate": None}
            self.data["waves"].append(found)
        return found

    def message(self, text: str) -> None:
        self.data["message"] = text.strip()
        self._write()

    def wave(self, label: str, status: str, **extra: Any) -> None:
        self._wave(label).update(status=status, **extra)
        self._write()

    def gate_tick(self, label: str, traffic: Window, verdict: str | None = None) -> None:
        self._wave(label)["gate"] = {
            "requests": int(traffic.requests), "error_rate": round(traffic.error_rate, 2),
            "p99_ms": None if traffic.p99_ms is None else round(traffic.p99_ms, 1),
            "elapsed_s": round(traffic.seconds, 1), "verdict": verdict,
        }
        self._write()

    def finish(self, status: str, note: str = "") -> None:
        self.data.update(status=status, finished_at=time.time())
        if note:
            self.data["message"] = note
        self._write()
