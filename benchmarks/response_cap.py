"""Memory taken by a huge response body, with and without the client's body cap (issue 14 item 8).

    nice -n 5 .venv/bin/python -m benchmarks.response_cap [--megabytes 200]

A hostile server on 127.0.0.1 answers a 200 MB JSON body. Each case runs in a fresh child process and
reports its peak RSS growth (``ru_maxrss``) over the call: "uncapped" reads the body the way the client
did before the cap (``requests`` without streaming, ``response.content`` then parsing); "capped" is
the real client with its default ``max_response_bytes`` (16 MiB), which stops reading and fails.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from airflow_provider_omnisend.testing.servers import ServerProcess, free_port

from .common import PROJECT_ROOT


def _child(case: str, url: str) -> None:
    import orjson
    import requests

    from airflow_provider_omnisend.api.client import OmnisendClient
    from airflow_provider_omnisend.api.errors import OmnisendApiError
    from airflow_provider_omnisend.api.versions import get_version

    client = OmnisendClient(base_url=url, api_key="bench-key", version=get_version(None), max_attempts=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = "read"
    if case == "uncapped":
        response = requests.get(f"{url}/batches/b1", timeout=60)
        orjson.loads(response.content)
    else:
        try:
            client.get_batch("b1")
        except OmnisendApiError as err:
            outcome = f"failed: {str(err)[:80]}…"
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps({"case": case, "rss_growth_mb": round(growth_mb, 1), "outcome": outcome}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    port = free_port()
    argv_server = [sys.executable, "-m", "tests.reliability.hostile_server", str(port)]
    with ServerProcess(argv_server, port=port, name="hostile-server", cwd=PROJECT_ROOT) as server:
        url = f"{server.base_url}/huge/{args.megabytes}"
        for case in ("uncapped", "capped"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.response_cap", "--child", case, url],
                                 cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=600)
            print(out.stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
