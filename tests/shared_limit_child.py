"""A separate process drawing on a shared rate-limit store (run by tests/unit/test_shared_limiter.py).

    python -m tests.shared_limit_child STORE KEY LIMIT WINDOW SECONDS LEASE_TTL [hold]

STORE is ``redis:<url>|<prefix>`` or ``sqlite:<path>``. Prints one wall-clock grant time per line;
``hold`` takes leases and never releases them (the parent SIGKILLs it); ``api=<base url>`` sends real
requests instead (an OmnisendClient on the limiter, 4 threads) and prints how many it sent.
"""

from __future__ import annotations

import sys
import threading
import time

from airflow_provider_omnisend.api.sharedlimit import RedisStore, SharedLimiter, SQLiteStore


def store_from(spec: str):
    kind, _, rest = spec.partition(":")
    if kind == "redis":
        url, _, prefix = rest.partition("|")
        return RedisStore.from_url(url, prefix=prefix)
    return SQLiteStore(rest)


def main() -> None:
    spec, key, limit, window, seconds, lease_ttl, *mode = sys.argv[1:]
    limiter = SharedLimiter(store_from(spec), key, limit=int(limit), window=float(window),
                            lease_ttl=float(lease_ttl))
    end = time.time() + float(seconds)
    if mode and mode[0].startswith("api="):
        send(limiter, mode[0][4:], int(limit), float(window), end)
        return
    while time.time() < end:
        lease = limiter.acquire()
        print(f"{time.time():.6f}", flush=True)
        if not mode:
            limiter.release(lease)


def send(limiter: SharedLimiter, api_url: str, limit: int, window: float, end: float) -> None:
    from airflow_provider_omnisend.api.client import OmnisendClient
    from airflow_provider_omnisend.api.versions import get_version
    from tests.support import TEST_API_KEY

    version = get_version(None)
    client = OmnisendClient(base_url=version.base_url(api_url), api_key=TEST_API_KEY, version=version,
                            requests_per_minute=limit, window_seconds=window, timeout=5,
                            limiters={"default": limiter, "tags": limiter})

    def loop() -> None:
        while time.time() < end:
            client.ping()

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(client.stats["requests"], flush=True)


if __name__ == "__main__":
    main()
