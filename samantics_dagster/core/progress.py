"""Rate and ETA lines for long loops, throttled so a log isn't flooded (Dagster logs are persisted)."""

from __future__ import annotations

import time
from collections.abc import Callable


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressLog:
    """Calls ``emit`` with "what done/total, rate/s, ETA" at most every ``every_s`` seconds (and at the end)."""

    def __init__(self, emit: Callable[[str], None], what: str, unit: str, every_s: float = 5.0) -> None:
        self.emit, self.what, self.unit, self.every_s = emit, what, unit, every_s
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        self.emit(f"{self.what}: {done}/{total} {self.unit}, {rate:.1f} {self.unit}/s, ETA {format_eta(eta)}")
