"""Client-side sliding-window rate limiting, so a run alone against Omnisend never draws a 429.

Omnisend limits each brand over a sliding one-minute window (NOTES.md section 4). The limiter admits at
most ``limit`` requests in any ``window`` seconds, measured when a request is about to be sent. The
server measures at arrival; to absorb jitter in transit the window is widened by ``margin`` (a fraction).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """Thread-safe: several sender threads share one budget."""

    def __init__(
        self,
        *,
        limit: int,
        window: float = 60.0,
        margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 request per window, got {limit}")
        if window <= 0:
            raise ValueError(f"rate window must be positive, got {window}")
        self.limit = limit
        self.window = window * (1.0 + margin)
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self) -> None:
        """Block until one more request fits in the window, then record it."""
        while True:
            with self._lock:
                now = self._clock()
                horizon = now - self.window
                while self._sent and self._sent[0] <= horizon:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                wait = self._sent[0] - horizon
            self.waited_seconds += wait
            self._sleep(wait)

    def penalise(self, seconds: float) -> None:
        """Hold every sender back for ``seconds`` (after a 429 from someone else sharing the brand)."""
        with self._lock:
            until = self._clock() + seconds - self.window
            # Fill the window with stamps that expire at ``until + window``: nobody is admitted before.
            self._sent = deque([until] * self.limit)

    def in_window(self) -> int:
        with self._lock:
            horizon = self._clock() - self.window
            return sum(1 for stamp in self._sent if stamp > horizon)
