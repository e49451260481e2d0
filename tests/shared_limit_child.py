"""A separate process drawing on a shared rate-limit store (run by tests/unit/test_shared_limiter.py).

    python -m tests.shared_limit_child STORE KEY LIMIT WINDOW SECONDS LEASE_TTL [hold]

STORE is ``redis:<url>|<prefix>`` or ``sqlite:<path>``. Prints one wall-clock grant time per line;
``hold`` takes leases and never releases them (the parent SIGKILLs it).
"""

from __future__ import annotations

import sys
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
    while time.time() < end:
        lease = limiter.acquire()
        print(f"{time.time():.6f}", flush=True)
        if not mode:
            limiter.release(lease)


if __name__ == "__main__":
    main()
