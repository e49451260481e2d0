"""Write a small demo Customer Insights export into the lake folder the compose stack mounts.

    docker compose exec airflow-worker python /opt/airflow/omnisend-provider/docker/demo_lake.py

Writes ``<lake>/CustomerInsights_demo/OmnisendExport`` (model.json + CSV partitions) with the segments
``HighValueCustomers`` and ``NewsletterFans``: the export ``OMNISEND_LAKE_PATH`` in .env.example points
at. A share of the rows is broken on purpose, so the run shows rejects. An existing export is left alone
unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.testing.sample_data import COLUMNS, synthetic_profiles

INSTANCE_ID = "demo"
EXPORT_NAME = "OmnisendExport"


def write_demo_lake(lake: Path, *, rows: int, force: bool = False) -> Path | None:
    """Write the demo export below ``lake``; return its folder, or None when one is already there."""
    export_dir = lake / f"CustomerInsights_{INSTANCE_ID}" / EXPORT_NAME
    if export_dir.exists():
        if not force:
            return None
        shutil.rmtree(export_dir)
    newsletter_rows = max(1, rows // 2)
    return write_cdm_export(
        lake,
        entity="HighValueCustomers",
        columns=COLUMNS,
        rows=synthetic_profiles(rows, seed=7),
        # Overlaps the first segment by a quarter: one contact can be in both segments.
        more_entities={"NewsletterFans": synthetic_profiles(newsletter_rows, start=rows - rows // 4, seed=8)},
        instance_id=INSTANCE_ID,
        export_name=EXPORT_NAME,
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("lake", nargs="?", default="/opt/airflow/lake", help="the lake folder (%(default)s)")
    p.add_argument("--rows", type=int, default=5000, help="profiles in HighValueCustomers (%(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing demo export")
    args = p.parse_args(argv)
    written = write_demo_lake(Path(args.lake), rows=args.rows, force=args.force)
    if written is None:
        print(f"{args.lake}/CustomerInsights_{INSTANCE_ID}/{EXPORT_NAME} exists; --force replaces it")
    else:
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
