"""The description of one complete export: what the sensor hands to the export operator.

It is a small, JSON-serialisable value (XCom, trigger events) that names the files to read instead of
holding any data, so the operator can stream exactly the export the sensor saw, even while the lake
writes a newer refresh next to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from airflow_provider_omnisend.lake.batches import is_list_type

FORMATS = ("cdm", "parquet", "csv", "delta")


@dataclass(frozen=True)
class CsvOptions:
    """How to parse a CSV file (from CDM fileFormatSettings/traits, or sniffed from a header)."""

    header: bool
    delimiter: str = ","
    quotechar: str | None = '"'
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1:
            raise ValueError(f"CSV delimiter must be one character, got {self.delimiter!r}")
        if self.quotechar is not None and len(self.quotechar) != 1:
            raise ValueError(f"CSV quote character must be one character or None, got {self.quotechar!r}")


@dataclass(frozen=True)
class ResolvedExport:
    """A complete export found in the lake.

    ``export_id`` is stable for the same data (CDM refresh, fingerprint of file paths, sizes and mtimes,
    or Delta version): the sensor compares it with the watermark of the last exported one. For CDM
    exports, ``csv`` is None when the partitions are Parquet.
    """

    source: str
    format: str
    export_id: str
    files: tuple[str, ...]
    columns: tuple[str, ...]
    entity: str | None = None
    csv: CsvOptions | None = None
    delta_version: int | None = None
    refresh_time: str | None = None
    #: ``(column, "number"|"boolean"|"date"|"list")`` for the columns the source declares typed (CDM
    #: ``dataType``/``dataFormat``, Parquet and Delta schemas); the export sends mapped custom properties
    #: so typed.
    column_types: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "column_types", tuple((str(c), str(t)) for c, t in self.column_types))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for XCom and trigger events); inverse of :meth:`from_dict`."""
        data = asdict(self)
        data["files"] = list(self.files)
        data["columns"] = list(self.columns)
        return data

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResolvedExport:
        missing = [k for k in ("source", "format", "export_id", "files", "columns") if k not in d]
        if missing:
            raise ValueError(
                f"Not a resolved export: keys {missing} are missing (got {sorted(d)}). Pass the value the "
                "OmnisendSegmentExportSensor pushed to XCom."
            )
        csv = d.get("csv")
        return cls(
            source=d["source"],
            format=d["format"],
            export_id=d["export_id"],
            files=tuple(d["files"]),
            columns=tuple(d["columns"]),
            entity=d.get("entity"),
            csv=CsvOptions(**csv) if isinstance(csv, dict) else csv,
            delta_version=d.get("delta_version"),
            refresh_time=d.get("refresh_time"),
            column_types=tuple(tuple(pair) for pair in d.get("column_types") or ()),
        )


#: CDM data types (model.json ``dataType``, manifest ``dataFormat``; compared lower-cased) by the JSON
#: type a custom property of that column is sent as. Anything else is text.
_CDM_TYPES = {
    "number": {"int16", "int32", "int64", "integer", "byte", "double", "float", "decimal"},
    "boolean": {"boolean"},
    "date": {"date", "datetime", "datetimeoffset"},
}


def cdm_property_type(declared: object) -> str | None:
    """``number``, ``boolean`` or ``date`` for a CDM attribute type; None for text and unknown types."""
    name = str(declared or "").lower()
    return next((kind for kind, names in _CDM_TYPES.items() if name in names), None)


def arrow_property_type(typ: pa.DataType) -> str | None:
    """``number``, ``boolean``, ``date`` or ``list`` for an Arrow column type; None for text and the
    rest."""
    if is_list_type(typ):
        return "list"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "number"
    if pa.types.is_boolean(typ):
        return "boolean"
    if pa.types.is_date(typ) or pa.types.is_timestamp(typ):
        return "date"
    return None
