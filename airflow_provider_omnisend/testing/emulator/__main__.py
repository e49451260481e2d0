"""``python -m airflow_provider_omnisend.testing.emulator``: run the Omnisend emulator.

Example: ``python -m airflow_provider_omnisend.testing.emulator --port 8999 --time-scale 0.1``.
The default API key is ``test-key``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from .app import create_app
from .config import API_VERSION, DEFAULT_API_KEY, Settings

log = logging.getLogger("omnisend_emulator")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m airflow_provider_omnisend.testing.emulator",
        description=f"Local emulator of Omnisend's API {API_VERSION} (plus minimal v3/v5).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8999)
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"an accepted API key (one brand each); repeatable; default {DEFAULT_API_KEY!r}",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiplies every emulated duration (rate windows, delays); 0.01 = 100x faster",
    )
    p.add_argument("--latency-ms", type=float, default=0.0, help="real latency added to every API request")
    p.add_argument("--rpm", type=int, default=400, help="requests/min per brand, bucket default (<=0: off)")
    p.add_argument("--tags-rpm", type=int, default=60, help="requests/min per brand for /contacts/tags")
    p.add_argument(
        "--processing-items-per-s",
        type=float,
        default=0.0,
        help="batch items processed per emulated second (0: as fast as possible)",
    )
    p.add_argument(
        "--tags-delay-s", type=float, default=0.5, help="emulated seconds before a tag request is applied"
    )
    p.add_argument(
        "--retired-version",
        action="append",
        dest="retired_versions",
        default=[],
        metavar="V",
        help="answer 410 for this Omnisend-Version (or v3 / v5 for the legacy paths); repeatable",
    )
    p.add_argument(
        "--send-retry-after-header",
        action="store_true",
        help="also send an HTTP Retry-After header on 429 (Omnisend does not document one)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for the fault injection")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument(
        "--loop",
        default="auto",
        choices=("auto", "asyncio", "uvloop"),
        help="event loop; auto uses uvloop when it is installed",
    )
    args = p.parse_args(argv)
    if args.time_scale <= 0:
        p.error("--time-scale must be positive")
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        api_keys=args.api_keys or [DEFAULT_API_KEY],
        time_scale=args.time_scale,
        latency_ms=args.latency_ms,
        rpm=args.rpm,
        tags_rpm=args.tags_rpm,
        processing_items_per_s=args.processing_items_per_s,
        tags_delay_s=args.tags_delay_s,
        retired_versions=list(args.retired_versions),
        send_retry_after_header=args.send_retry_after_header,
        seed=args.seed,
    )


async def serve(settings: Settings, host: str, port: int, access_log: bool = False) -> None:
    app = create_app(settings)
    runner = web.AppRunner(
        app, access_log=logging.getLogger("aiohttp.access") if access_log else None, handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    log.info("Omnisend emulator (API %s) listening on http://%s:%d", API_VERSION, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("Omnisend emulator stopped")


def _loop_factory(choice: str):  # type: ignore[no-untyped-def]
    if choice in ("auto", "uvloop"):
        try:
            import uvloop

            return uvloop.new_event_loop
        except ImportError:
            if choice == "uvloop":
                raise
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
        runner.run(
            serve(settings_from_args(args), args.host, args.port, access_log=args.log_level == "debug")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
