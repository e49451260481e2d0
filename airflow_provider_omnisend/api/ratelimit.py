"""Client-side sliding-window rate limiting, so a run alone against Omnisend never draws a 429.

Omnisend limits each brand over a sliding one-minute window, counted when a request *arrives*
(docs/omnisend-api.md, section 4). We cannot see arrival times, only that a request arrives somewhere
between the moment we start sending it and the moment its response ends. So a request holds its slot from the
start of sending until one full window after its response ended. Then any window on the server's
clock holds at most ``limit`` arrivals, whatever the network and thread scheduling delays were; the
price is one round-trip per window, about 0.2% of a 60 s window.

A 429's back-off only ever *adds* waiting: it moves a "nobody sends before" time forward and leaves the
window's history alone. Forgetting that history would let a full budget through right after the back-off
while the earlier requests are still inside the server's window (twice the limit in one window).

Waits observe an optional ``cancel`` event (the task being killed): a waiting sender then raises
:class:`~airflow_provider_omnisend.api.errors.OmnisendCancelled` at once instead of sleeping on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from airflow_provider_omnisend.api.errors import OmnisendCancelled

#: How often a sender blocked on in-flight requests looks at its cancel event.
_CANCEL_POLL_SECONDS = 0.2


class SlidingWindowLimiter:
    """Thread-safe: several sender threads share one budget."""

    def __init__(
        self,
        *,
        limit: int,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        cancel: threading.Event | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 request per window, got {limit}")
        if window <= 0:
            raise ValueError(f"rate window must be positive, got {window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self.cancel = cancel
        self._not_before = float("-inf")  # a 429's back-off: nobody sends before this time
        self._ended: deque[float] = deque()  # end times of finished requests, in order
        self._in_flight = 0
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self.waited_seconds = 0.0

    @contextmanager
    def slot(self, cancel: threading.Event | None = None) -> Iterator[None]:
        """Hold one slot for the duration of a request (and one window after it)."""
        self.acquire(cancel)
        try:
            yield
        finally:
            self.release()

    def acquire(self, cancel: threading.Event | None = None) -> None:
        """Block until one more request fits, then count it as in flight."""
        cancel = cancel or self.cancel
        while True:
            if cancel is not None and cancel.is_set():
                raise OmnisendCancelled("Cancelled before sending to Omnisend.")
            with self._lock:
                now = self._clock()
                self._expire(now)
                if now < self._not_before:
                    wait = self._not_before - now
                elif self._in_flight + len(self._ended) < self.limit:
                    self._in_flight += 1
                    return
                elif self._ended:
                    wait = self._ended[0] + self.window - now
                else:  # the whole budget is in flight: wait for a release
                    self._released.wait(timeout=self.window if cancel is None else _CANCEL_POLL_SECONDS)
                    continue
            self.waited_seconds += wait
            self._pause(wait, cancel)

    def release(self) -> None:
        """The request's response has ended: its slot frees one window from now."""
        with self._lock:
            self._in_flight -= 1
            self._ended.append(self._clock())
            self._released.notify()

    def note_ended(self) -> None:
        """Count a request that another limiter let through, whose response just ended."""
        with self._lock:
            self._ended.append(self._clock())

    def penalise(self, seconds: float) -> None:
        """Hold every sender back for ``seconds`` (after a 429 caused by someone sharing the brand).

        Only adds waiting: the window's history stays, so the budget still counts the requests before.
        """
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def in_window(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return self._in_flight + len(self._ended)

    def history_offsets(self, in_flight_hold: float) -> list[float]:
        """Seconds from now until each counted request leaves the window (an in-flight one is counted
        for ``in_flight_hold`` + one window): what a shared store must learn when this limiter hands
        over to it."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            ended = [t + self.window - now for t in self._ended]
            return ended + [in_flight_hold + self.window] * self._in_flight

    def _pause(self, seconds: float, cancel: threading.Event | None) -> None:
        if cancel is None:
            self._sleep(seconds)
        elif cancel.wait(seconds):
            raise OmnisendCancelled("Cancelled while waiting for the Omnisend rate budget.")

    def _expire(self, now: float) -> None:
        horizon = now - self.window + 1e-9  # tolerance: a float sleep can land a hair short
        while self._ended and self._ended[0] <= horizon:
            self._ended.popleft()
