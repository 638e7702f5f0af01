"""The latest requests this sidecar served, one (sequence, duration, status) each.

Counters and histograms answer "how many" and "about how long"; comparing a canary with its
baseline (`meshctl promote`) needs the latencies themselves, since a histogram bucket hides a
20% difference. A bounded ring keeps the last `SIZE`: a reader asks for the samples after the
sequence number it saw last, so two reads make a window. Cost per request: one tuple appended
to a deque.
"""

from __future__ import annotations

from collections import deque

SIZE = 8192


class RecentRequests:
    def __init__(self, size: int = SIZE) -> None:
        self._ring: deque[tuple[int, float, int]] = deque(maxlen=size)
        self.seq = 0

    def add(self, duration_ms: float, status: int) -> None:
        self.seq += 1
        self._ring.append((self.seq, duration_ms, status))

    def since(self, seq: int) -> list[tuple[float, int]]:
        """(duration ms, status) of the requests after `seq` that are still in the ring."""
        if seq >= self.seq:
            return []
        return [(ms, status) for s, ms, status in self._ring if s > seq]
