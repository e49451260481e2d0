"""Read customer segments from a data lake: CDM folders (Customer Insights), Parquet, CSV and Delta.

Nothing here imports Airflow: the sensor, trigger and export operator are thin glue around these calls.
"""

from airflow_provider_omnisend.lake.errors import (
    ColumnNotFound,
    CsvLayoutMismatch,
    EntityNotFound,
    ExportNotReady,
    LakeAccessError,
    LakeError,
    LakePathNotFound,
    ManifestNotFound,
    MissingExtra,
    PartitionUnreadable,
    UnsupportedFormat,
)
from airflow_provider_omnisend.lake.export import CsvOptions, ResolvedExport
from airflow_provider_omnisend.lake.reader import count_rows, iter_batches, resolve_export
from airflow_provider_omnisend.lake.watermark import read_watermark, watermark_key, write_watermark

__all__ = [
    "ColumnNotFound",
    "CsvLayoutMismatch",
    "CsvOptions",
    "EntityNotFound",
    "ExportNotReady",
    "LakeAccessError",
    "LakeError",
    "LakePathNotFound",
    "ManifestNotFound",
    "MissingExtra",
    "PartitionUnreadable",
    "ResolvedExport",
    "UnsupportedFormat",
    "count_rows",
    "iter_batches",
    "read_watermark",
    "resolve_export",
    "watermark_key",
    "write_watermark",
]
