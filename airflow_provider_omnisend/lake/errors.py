"""Errors raised while reading a data lake export.

Every message says what was wrong, where (the URL, entity or file), and what the user can do about it,
because these errors end up in an Airflow task log read by someone who did not write the DAG. Messages
never contain row data (e-mail addresses) or credentials.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

# Query/connection-string fragments that carry credentials; stripped from any third-party message we quote.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(sig|se|sp|sv|skoid|sktid|skt|ske|sks|skv|st|spr|srt|ss)=[^&\s;]+"),
    re.compile(r"(?i)(AccountKey|SharedAccessSignature|SharedAccessKey|password|secret|token)=[^;\s&]+"),
)
# pyarrow appends the offending CSV row to parse errors; a row may hold e-mail addresses.
_CSV_ROW_TAIL = re.compile(r"(Expected \d+ columns?, got \d+).*", re.DOTALL)


def safe_reason(err: BaseException) -> str:
    """Describe a third-party exception in one line, without credentials or row contents."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = _CSV_ROW_TAIL.sub(r"\1", text)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}=***", text)
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def redact_value(name: str) -> str:
    """A "column name" holding an '@' is a data value (a header-less file read with a header): hide it,
    so an error message never carries a customer's e-mail into a log."""
    return "<a value containing '@', redacted>" if "@" in str(name) else repr(name)


def _listing(names: Iterable[str], *, limit: int = 30) -> str:
    names = list(names)
    shown = ", ".join(redact_value(n) for n in names[:limit])
    more = f" (and {len(names) - limit} more)" if len(names) > limit else ""
    return (shown + more) if names else "(none)"


class LakeError(Exception):
    """Base class: something about the lake export that the user can fix (path, format, schema, access)."""


class LakePathNotFound(LakeError):
    """The given source URL/path does not exist (or is not visible with the given credentials)."""

    def __init__(self, path: str, *, detail: str = "") -> None:
        self.path = path
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"Lake path {path!r} does not exist{extra}. Check the `source` URL (container/bucket and folder "
            "names are case-sensitive) and that the lake connection's credentials can list it."
        )


class LakeAccessError(LakeError):
    """Listing or opening something in the lake failed for a reason other than 'not found'."""

    def __init__(self, path: str, *, action: str, reason: str) -> None:
        self.path = path
        super().__init__(
            f"Could not {action} {path!r}: {reason}. Check the lake connection (lake_conn_id / "
            "storage_options: account, key or token, network access) and that the path is correct."
        )


class UnsupportedFormat(LakeError):
    """The format could not be detected, or an unknown format name was given."""


class ManifestNotFound(LakeError):
    """format='cdm' was requested but the folder has neither model.json nor *.manifest.cdm.json."""

    def __init__(self, path: str, *, found: Sequence[str] = ()) -> None:
        self.path = path
        super().__init__(
            f"No CDM manifest in {path!r}: expected 'model.json' or '*.manifest.cdm.json' directly in this "
            f"folder; found {_listing(found)}. Point `source` at the export folder "
            "(<container>/CustomerInsights_<instance>/<ExportName>) or choose another source_format."
        )


class EntityNotFound(LakeError):
    """The requested CDM entity is not in the manifest, or the choice is ambiguous."""

    def __init__(self, *, wanted: str | None, available: Sequence[str], manifest: str) -> None:
        self.wanted = wanted
        self.available = tuple(available)
        if wanted is None:
            what = f"The manifest {manifest!r} lists several entities and none was chosen"
        else:
            what = f"Entity {wanted!r} is not in the manifest {manifest!r}"
        close = difflib.get_close_matches(wanted or "", self.available, n=3, cutoff=0.6) if wanted else []
        hint = f" Did you mean {_listing(close)}?" if close else ""
        super().__init__(
            f"{what}; it lists {_listing(self.available)}.{hint} Pass `entity=` with one of these names "
            "(or a `segment` whose name matches an entity)."
        )


class ColumnNotFound(LakeError):
    """Columns requested for the export are not in the source."""

    def __init__(self, *, missing: Sequence[str], available: Sequence[str], where: str) -> None:
        self.missing = tuple(missing)
        self.available = tuple(available)
        hints = []
        for name in self.missing:
            close = difflib.get_close_matches(name, self.available, n=1, cutoff=0.6)
            lower = [a for a in self.available if a.lower() == name.lower()]
            if lower or close:
                hints.append(f"{name!r} -> {(lower or close)[0]!r}?")
        hint = f" Close matches: {', '.join(hints)}." if hints else ""
        super().__init__(
            f"Column(s) {_listing(self.missing)} not found in {where}; available columns: "
            f"{_listing(self.available, limit=60)}.{hint} Fix the field mapping (column names are "
            "case-sensitive)."
        )


class PartitionUnreadable(LakeError):
    """A data file listed by the export could not be read or parsed."""

    def __init__(self, file: str, *, reason: str, hint: str = "") -> None:
        self.file = file
        hint = hint or (
            "Check that the file is complete and in the expected format (re-run the lake export if it was "
            "cut short)."
        )
        super().__init__(f"Could not read partition {file!r}: {reason}. {hint}")


class CsvLayoutMismatch(PartitionUnreadable):
    """A header-less CSV partition has a different number of columns than its manifest declares."""

    def __init__(self, file: str, *, expected: int, got: int, manifest: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(
            file,
            reason=f"it has {got} column(s) per row but {manifest} declares {expected} attribute(s)",
            hint=(
                "The manifest and the files disagree (the entity's attributes changed, or the files use "
                "another delimiter): re-run the export so both are rewritten together, or check the "
                "delimiter in fileFormatSettings."
            ),
        )


class ExportNotReady(LakeError):
    """No complete export exists yet (no refresh listed, partitions still missing, or no data files)."""

    def __init__(self, source: str, *, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"No complete export in {source!r} yet: {reason}.")


class MissingExtra(LakeError):
    """An optional dependency needed for this source is not installed."""

    def __init__(self, *, extra: str, needed_for: str, module: str) -> None:
        self.extra = extra
        super().__init__(
            f"Reading {needed_for} needs the Python package {module!r}, which is not installed. "
            f"Install it with: pip install 'airflow-provider-omnisend[{extra}]'"
        )
