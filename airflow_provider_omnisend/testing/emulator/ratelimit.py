"""Per-brand sliding-window rate limiter (Omnisend: "sliding, over the last minute")."""

from __future__ import annotations

import math
from collections import deque


class SlidingWindowLimiter:
    """Counts accepted requests per (brand, bucket) inside the last ``window_s`` seconds.

    ``max_in_window[bucket]`` is the most accepted requests ever seen inside one window: the count is
    taken each time a request is accepted (the busiest window always ends at an accepted request).
    """

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str], deque[float]] = {}
        self.max_in_window: dict[str, int] = {}

    def reset(self) -> None:
        self.windows.clear()
        self.max_in_window.clear()

    def _window(self, brand: str, bucket: str, now: float, window_s: float) -> deque[float]:
        win = self.windows.get((brand, bucket))
        if win is None:
            win = self.windows[(brand, bucket)] = deque()
        edge = now - window_s
        while win and win[0] <= edge:
            win.popleft()
        return win

    def acquire(self, brand: str, bucket: str, limit: int, window_s: float, now: float) -> float | None:
        """Accept (None) or refuse with the seconds until a slot frees. ``limit <= 0`` means no limit."""
        win = self._window(brand, bucket, now, window_s)
        if 0 < limit <= len(win):
            return max(win[len(win) - limit] + window_s - now, 0.0)
        win.append(now)
        if len(win) > self.max_in_window.get(bucket, 0):
            self.max_in_window[bucket] = len(win)
        return None

    def usage(self, brand: str, bucket: str, limit: int, window_s: float, now: float) -> tuple[int, int]:
        """(remaining, seconds until the oldest counted request leaves the window) for X-Rate-Limit-*."""
        win = self._window(brand, bucket, now, window_s)
        remaining = max(limit - len(win), 0) if limit > 0 else 1_000_000
        reset = math.ceil(win[0] + window_s - now) if win else 0
        return remaining, max(reset, 0)


def retry_after_seconds(wait_s: float) -> int:
    """Body ``retryAfter``: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait_s - 1e-9))
