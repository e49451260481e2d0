"""One ExportEngine run in its own process, for the kill tests (``test_reliability_kills.py``).

The parent SIGKILLs it at chosen points and then reruns the export. Progress goes to a JSON file
(``JsonFileProgressStore``, written atomically) standing in for Airflow's task state store, so it
survives the kill exactly as the task state store survives a worker's death.

Airflow itself is not imported (``sys.modules["airflow"] = None``): the engine does not need it
(``api.errors`` falls back to ``Exception`` as its documented base) and importing it would cost ~5 s
per child on the shared CI cores.

Options of note: ``--read-delay`` pauses between the 1,000-row input batches (a slow lake read: it
makes the prepare phase long enough to be hit); ``--pause-before-snapshot MARKER`` wraps the engine's
``write_snapshot_batches`` so that the child creates MARKER and sleeps before writing the snapshot (the only
window too short to hit by polling: every batch confirmed, snapshot not written yet); ``--cancel-on-sigterm``
makes SIGTERM set the client's cancel event, as ``OmnisendExportSegmentOperator.on_kill`` does.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--rejects", required=True)
    parser.add_argument("--progress", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--export-id", default="kill-test")
    parser.add_argument("--rpm", type=int, default=60)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--confirm-every", type=int, default=200)
    parser.add_argument("--read-delay", type=float, default=0.0)
    parser.add_argument("--pause-before-snapshot", default=None)
    parser.add_argument("--cancel-on-sigterm", action="store_true",
                        help="SIGTERM sets the client's cancel event, as the operator's on_kill does")
    args = parser.parse_args()

    sys.modules["airflow"] = None  # type: ignore[assignment]  # see the module docstring
    from airflow_provider_omnisend.export import engine as engine_module
    from airflow_provider_omnisend.testing.sample_data import synthetic_profiles
    from tests.reliability.helpers import JsonFileProgressStore, make_client, run_engine, slow_batches

    if args.pause_before_snapshot:
        real_write = engine_module.write_snapshot_batches  # the new snapshot, after every confirmation

        def paused_write(*a, **kw):
            Path(args.pause_before_snapshot).write_text("about to write the snapshot")
            time.sleep(120)
            return real_write(*a, **kw)

        engine_module.write_snapshot_batches = paused_write

    table = synthetic_profiles(args.rows, seed=args.seed)
    client = make_client(args.api_url, args.api_key, requests_per_minute=args.rpm,
                         max_in_flight=args.max_in_flight)
    if args.cancel_on_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: client.cancel.set())
    summary = run_engine(
        client=client, batches=slow_batches(table, delay=args.read_delay), columns=table.column_names,
        state_dir=args.state_dir, work_dir=args.work_dir, rejects_path=args.rejects,
        progress=JsonFileProgressStore(args.progress), export_id=args.export_id,
        max_in_flight=args.max_in_flight, confirm_every=args.confirm_every)
    out = {"summary": summary.to_dict(), "client_stats": dict(client.stats)}
    Path(args.summary).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
