"""Regenerate the shipped sample lake: a Customer Insights CDM export with two segments.

    .venv/bin/python scripts/make_sample_lake.py [--out examples/lake]

``HighValueCustomers`` (3,000 profiles) and ``NewsletterFans`` (2,000, overlapping the first), header-less
CSV partitions and a model.json, as Customer Insights writes them to ADLS Gen2. About 2% of the rows are
broken on purpose (invalid e-mails, case/space duplicates) so the demo shows rejects with reasons.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from airflow_provider_omnisend.testing.lake_fixtures import write_cdm_export
from airflow_provider_omnisend.testing.sample_data import COLUMNS, synthetic_profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "examples" / "lake"))
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    folder = write_cdm_export(
        out, entity="HighValueCustomers", columns=COLUMNS, rows=synthetic_profiles(3000, seed=11),
        more_entities={"NewsletterFans": synthetic_profiles(2000, seed=12, start=2000)},
        partitions=2, refresh_times=["2026-11-27T03:00:00Z"], instance_id="demo",
    )
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
