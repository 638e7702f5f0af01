"""The marks the supervisor leaves in the environment of every process it starts: who owns it
(the state directory) and its name. `ownership` finds and verifies processes by them."""

from __future__ import annotations

OWNER_ENV = "MESHCTL_SUPERVISED_BY"
NAME_ENV = "MESHCTL_PROCESS"
