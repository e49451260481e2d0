"""Vectorised normalisation and validation of one batch of lake rows.

Every value is cleaned the same way: control characters are removed (tab/CR/LF and other line breaks
become a space, so "Main St\\r\\nApt 4" stays readable), surrounding whitespace is trimmed (Unicode
spaces, NBSP, zero-width space and BOM included), and an empty result becomes null. Nulls are simply
left out of the payload: Omnisend never receives ``""`` that would blank a field it already holds.

Then each mapped field is checked, in this order: email, phone, the other fields in catalogue order
(firstName, lastName, address, city, state, postalCode, country, countryCode, gender, birthdate,
createdAt), custom properties by name, then the email and sms channel statuses.

Only the e-mail decides whether a contact can be sent. A problem with any other field depends on the
mapping's ``on_invalid_field``:

- ``"drop_field"`` (the default): the contact is sent without that field (a bad phone also drops the
  phone identifier and its SMS status) and the problem is recorded as a field warning (kind
  ``field_dropped`` in the rejects file, one record per row and field). Why: one bad optional value
  must not cost a contact whose e-mail is fine, nor fail an export through ``max_reject_ratio``.
- ``"reject_row"``: the row is rejected for its FIRST problem, in the order above.

Reason codes:

=====================  ===============================================================================
``missing_email``      the e-mail column is empty for this row
``invalid_email``      not ``local@domain.tld`` (see ``EMAIL_PATTERN``), over 254 characters, or a local
                       part over 64 characters
``invalid_phone``      not E.164 (``+`` then 7 to 15 digits) after removing spaces, dashes, dots,
                       (), nor a valid national number of the row's country or default_phone_region
``too_long``           a text field or custom property is longer than its limit (see mapping.py), or
                       a list property has an item longer than 255 characters (see lists.py)
``too_many_items``     a list property has more than 100 items (see lists.py)
``invalid_country``    a countryCode value that is no ISO alpha-2/alpha-3/numeric code nor a country name
                       (English or one of countries.LANGUAGES) of exactly one country
``invalid_gender``     not m, f, male or female (any case)
``invalid_birthdate``  not a real calendar date ``YYYY-MM-DD`` (an ISO timestamp keeps its date part)
``invalid_created_at`` createdAt is not an RFC 3339 timestamp
``invalid_property``   a custom property typed number, boolean or date whose value does not fit that
                       type (see typed.py)
``invalid_consent``    consent createdAt is not an RFC 3339 timestamp
``invalid_status_changed_at`` status_changed_at is not an RFC 3339 timestamp: the date is left out, and
                       so are the row's mapped channel statuses (one warning each, field
                       ``channels.email`` / ``channels.sms``): undated, a stale "subscribed" could
                       overwrite a newer unsubscribe
``invalid_status``     a channel status column holds something other than subscribed, nonSubscribed,
                       unsubscribed (any case)
=====================  ===============================================================================

E-mail addresses are lower-cased, both as the de-duplication key and in what is sent. Omnisend matches
identifiers exactly (its v5 reference calls the e-mail identifier case-sensitive), so sending
``Ann@X.com`` one day and ``ann@x.com`` the next could create two contacts for one person; lower-casing
on every run keeps exactly one. Real mailbox providers treat the local part case-insensitively.

Details name the field, the source column and the limit; they never contain the e-mail itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_omnisend.export.countries import to_alpha2
from airflow_provider_omnisend.export.lists import (
    MAX_ITEM_LENGTH,
    MAX_LIST_ITEMS,
    clean_lists,
    has_long_item,
    is_list,
    json_arrays,
    split_text,
    too_many_items,
)
from airflow_provider_omnisend.export.mapping import (
    CONSENT_MAX_LENGTH,
    CUSTOM_PROPERTY_MAX_LENGTH,
    EMAIL_STATUS_SLOT,
    FIELDS,
    SMS_STATUS_SLOT,
    STATUS_CHANGED_AT_SLOT,
    FieldSpec,
    MappingError,
    MappingSpec,
    Source,
    consent_slot,
    custom_property_slot,
)
from airflow_provider_omnisend.export.phones import national_to_e164
from airflow_provider_omnisend.export.rejects import FIELD_DROPPED, make_rejects_table, source_values
from airflow_provider_omnisend.export.text import (
    ascii_lower,
    byte_layout,
    clean_text,
    remove_ascii,
    with_validity,
)
from airflow_provider_omnisend.export.typed import TYPE_EXAMPLES, base_type, cast_property, list_delimiter

# Dot-atom local part (RFC 5322 atext; no quoted strings, no leading/trailing/double dots), then at
# least two DNS labels (letters, digits, inner hyphens, 1..63 chars) ending in a letter-only TLD of two
# or more characters or a punycode TLD (xn--). ASCII only: internationalised addresses are rejected
# because their support by mail providers and by Omnisend is not documented. Applied after lower-casing.
_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
EMAIL_PATTERN = rf"^{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]{{1,59}})$"
EMAIL_MAX_LENGTH = 254
EMAIL_LOCAL_MAX_LENGTH = 64
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"
_PHONE_SEPARATORS = " -.()"  # tabs and line breaks were already turned into spaces
#: A national number (or one with a 00 international prefix), after removing separators.
_NATIONAL_SHAPE = r"^[0-9]{3,17}$"
_BIRTHDATE_SHAPE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})?)?$"
)
RFC3339_PATTERN = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:"
    r"(?:[0-5][0-9]|60)(?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_DATE_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9]
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_GENDERS = (pa.array(["m", "f", "male", "female"]), pa.array(["m", "f", "m", "f"]))
_STATUSES = (
    pa.array(["subscribed", "nonsubscribed", "unsubscribed"]),
    pa.array(["subscribed", "nonSubscribed", "unsubscribed"]),
)


@dataclass(frozen=True, slots=True)
class NormalizedBatch:
    """One batch split into normalised valid rows and rejected rows.

    ``valid`` has ``row`` (int64, input row number) then one string column per payload slot: the
    Omnisend field name, ``customProperties.<name>``, ``channels.email`` / ``channels.sms``.
    ``valid_positions`` are the valid rows' positions inside the batch (to fetch raw values later).
    """

    valid: pa.Table
    valid_positions: np.ndarray
    rejects: pa.Table
    reasons: dict[str, int]
    #: Field warnings (rejects-file records of kind ``field_dropped``) of the valid rows, in row order.
    warnings: pa.Table | None = None
    #: ``{slot: {reason: count}}`` of those warnings.
    warning_reasons: dict[str, dict[str, int]] | None = None


Detail = str | Callable[[np.ndarray], pa.Array]


@dataclass(frozen=True, slots=True)
class _Check:
    code: str
    failed: np.ndarray
    detail: Detail
    #: the payload slot this check guards
    slot: str = ""
    #: a failure rejects the row whatever ``on_invalid_field`` says (the e-mail checks)
    row_level: bool = False


def normalize_batch(
    batch: pa.RecordBatch | pa.Table, spec: MappingSpec, *, row_offset: int
) -> NormalizedBatch:
    """Normalise and validate ``batch``; row numbers are ``row_offset + position``."""
    missing = [column for column in spec.source_columns if column not in batch.schema.names]
    if missing:
        raise MappingError(
            f"the export batch has no column(s) {', '.join(map(repr, missing))}; it has "
            f"{', '.join(map(repr, batch.schema.names))}. Fix the mapping or read these columns."
        )
    n = batch.num_rows
    cleaned = {column: _clean(batch.column(column), column, spec) for column in spec.source_columns}
    slots: dict[str, pa.Array] = {}
    checks: list[_Check] = []
    regions = _phone_regions(spec, cleaned)
    for name, column in spec.fields:
        if name == "phone":
            slots[name], field_checks = _phone(cleaned[column], f'phone (column "{column}")', regions)
        else:
            slots[name], field_checks = _normalise_field(FIELDS[name], cleaned[column], column)
        checks += _guarding(name, field_checks)
    for name, column in spec.custom_properties:
        slot = custom_property_slot(name)
        slots[slot], found = _custom_property(cleaned[column], name, column, spec.property_type(name))
        checks += _guarding(slot, found)
    for slot, what, status in (
        (EMAIL_STATUS_SLOT, "email_status", spec.email_status),
        (SMS_STATUS_SLOT, "sms_status", spec.sms_status),
    ):
        if status is not None and status.column is not None:
            slots[slot], status_checks = _lookup(
                cleaned[status.column],
                _STATUSES,
                "invalid_status",
                f'{what} (column "{status.column}") is not subscribed, nonSubscribed or unsubscribed',
            )
            checks += _guarding(slot, status_checks)
    checks += _consent_slots(spec, cleaned, slots, n)

    drop_fields = spec.on_invalid_field == "drop_field"
    row_checks = [check for check in checks if check.row_level or not drop_fields]
    first = _first_failures(row_checks, n)
    bad = first < len(row_checks)
    rows = np.arange(row_offset, row_offset + n, dtype=np.int64)
    warnings, warning_reasons = None, None
    if drop_fields:
        field_checks = [check for check in checks if not check.row_level]
        warnings, warning_reasons = _drop_fields(batch, spec, slots, field_checks, sent=~bad, rows=rows)
    valid_positions = np.flatnonzero(~bad)
    keep = None if valid_positions.size == n else pa.array(~bad)
    valid = pa.table(
        {
            "row": pa.array(rows[valid_positions]),
            **{slot: values if keep is None else values.filter(keep) for slot, values in slots.items()},
        }
    )
    rejects, reasons = _rejects(
        batch, spec, checks=row_checks, first=first, positions=np.flatnonzero(bad), rows=rows
    )
    return NormalizedBatch(
        valid=valid,
        valid_positions=valid_positions,
        rejects=rejects,
        reasons=reasons,
        warnings=warnings,
        warning_reasons=warning_reasons,
    )


def _consent_slots(
    spec: MappingSpec, cleaned: dict[str, pa.StringArray], slots: dict[str, pa.Array], n: int
) -> list[_Check]:
    """``statusChangedAt`` and the consent members into ``slots``; their checks."""
    checks: list[_Check] = []
    if spec.status_changed_at is not None:
        values, where = _sourced(spec.status_changed_at, cleaned, n)
        slots[STATUS_CHANGED_AT_SLOT], found = _timestamp(
            values, f"status_changed_at ({where})", "invalid_status_changed_at"
        )
        checks += _guarding(STATUS_CHANGED_AT_SLOT, found)
        checks += _undated_statuses(spec, slots, found[0].failed, where)
    for name, source in spec.consent:
        values, where = _sourced(source, cleaned, n)
        label = f"consent {name} ({where})"
        if name == "createdAt":
            slots[consent_slot(name)], found = _timestamp(values, label, "invalid_consent")
        else:
            slots[consent_slot(name)], found = values, _length_checks(values, label, CONSENT_MAX_LENGTH)
        checks += _guarding(consent_slot(name), found)
    return checks


def _undated_statuses(
    spec: MappingSpec, slots: dict[str, pa.Array], undated: np.ndarray, where: str
) -> list[_Check]:
    """A mapped status whose ``status_changed_at`` is invalid is not sent either: without its date it
    would overwrite whatever Omnisend holds, a newer unsubscribe included. A constant status becomes a
    column first, so that it can be left out of these rows only."""
    checks: list[_Check] = []
    if not undated.any():
        return checks
    for slot, what, status in (
        (EMAIL_STATUS_SLOT, "email_status", spec.email_status),
        (SMS_STATUS_SLOT, "sms_status", spec.sms_status),
    ):
        if status is None:
            continue
        if slot not in slots:
            slots[slot] = pa.repeat(pa.scalar(status.constant, pa.string()), len(undated))
        detail = (
            f"{what} is not sent for this row: its status_changed_at ({where}) is not an RFC 3339 "
            "timestamp, and an undated status could overwrite a newer unsubscribe in Omnisend"
        )
        sent = _present(slots[slot])
        if slot == SMS_STATUS_SLOT and "phone" in slots:  # an SMS status goes with a phone only
            sent &= _present(slots["phone"])
        checks.append(_Check("invalid_status_changed_at", undated & sent, detail, slot=slot))
    return checks


def _clean(values: pa.Array | pa.ChunkedArray, column: str, spec: MappingSpec) -> pa.Array:
    """``clean_text``; a list column's items cleaned (lists.py), if only list properties use it."""
    if not is_list(values):
        return clean_text(values)
    misused = [f"custom property {name!r}" for name, source in spec.custom_properties
               if source == column and base_type(spec.property_type(name)) != "list"]
    misused += [f"field {name!r}" for name, source in spec.fields if source == column]
    if any(source.column == column for source in _status_and_consent_sources(spec)):
        misused.append("a status, status date or consent member")
    if misused:
        raise MappingError(
            f"column {column!r} holds lists, which can only be sent as an array custom property; "
            f"{', '.join(misused)} use(s) it. Map it under custom_properties with the type 'list' in "
            "custom_property_types (the operator declares it from the source schema), or map another column."
        )
    return clean_lists(values)


def _status_and_consent_sources(spec: MappingSpec) -> list[Source]:
    sources = [spec.email_status, spec.sms_status, spec.status_changed_at, *(s for _, s in spec.consent)]
    return [source for source in sources if source is not None]


def _sourced(source: Source, cleaned: dict[str, pa.StringArray], n: int) -> tuple[pa.StringArray, str]:
    """The cleaned values of a column-or-constant source, and how to name it in a detail."""
    if source.column is not None:
        return cleaned[source.column], f'column "{source.column}"'
    return clean_text(pa.repeat(pa.scalar(source.constant, pa.string()), n)), "constant"


def _timestamp(values: pa.StringArray, label: str, code: str) -> tuple[pa.Array, list[_Check]]:
    ok = _mask(pc.match_substring_regex(values, RFC3339_PATTERN))
    detail = f"{label} is not an RFC 3339 timestamp; expected e.g. 2024-01-31T12:00:00Z"
    return _converted(values, values, ok, code, detail)


def _guarding(slot: str, checks: list[_Check]) -> list[_Check]:
    return [replace(check, slot=slot) for check in checks]


def _first_failures(checks: list[_Check], n: int) -> np.ndarray:
    """Per row the index of its first failed check, ``len(checks)`` where none failed."""
    first = np.full(n, len(checks), dtype=np.int32)
    for index in range(len(checks) - 1, -1, -1):
        first[checks[index].failed] = index
    return first


def _drop_fields(
    batch: pa.RecordBatch | pa.Table,
    spec: MappingSpec,
    slots: dict[str, pa.Array],
    checks: list[_Check],
    *,
    sent: np.ndarray,
    rows: np.ndarray,
) -> tuple[pa.Table | None, dict[str, dict[str, int]]]:
    """Null every failed field value of the rows that are sent (in ``slots``); one warning per row and
    field (its first problem). Rows rejected anyway get no warnings: their reject record says it all."""
    tables: list[pa.Table] = []
    reasons: dict[str, dict[str, int]] = {}
    dropped: dict[str, np.ndarray] = {}
    for check in checks:
        already = dropped.get(check.slot)
        failed = check.failed & sent if already is None else check.failed & sent & ~already
        positions = np.flatnonzero(failed)
        if positions.size == 0:
            continue
        dropped[check.slot] = failed if already is None else already | failed
        per_slot = reasons.setdefault(check.slot, {})
        per_slot[check.code] = per_slot.get(check.code, 0) + int(positions.size)
        detail = check.detail if isinstance(check.detail, str) else check.detail(positions)
        details = [detail] * positions.size if isinstance(detail, str) else detail
        raw = source_values(batch, spec.source_columns, positions)
        tables.append(
            make_rejects_table(
                rows[positions], check.code, details, raw, spec.source_columns, kind=FIELD_DROPPED,
                field=check.slot,
            )
        )
    for slot, mask in dropped.items():
        slots[slot] = without(slots[slot], mask)
    if not tables:
        return None, {}
    table = pa.concat_tables(tables)
    if len(tables) > 1:
        table = table.take(pa.array(np.argsort(table.column("row").to_numpy(), kind="stable")))
    return table, reasons


def without(values: pa.Array, drop: np.ndarray) -> pa.Array:
    """``values`` with the positions in ``drop`` turned null (any type)."""
    if pa.types.is_string(values.type):
        return with_validity(values, ~drop)
    return pc.if_else(pa.array(drop), pa.nulls(len(values), values.type), values)


def _rejects(
    batch: pa.RecordBatch | pa.Table,
    spec: MappingSpec,
    *,
    checks: list[_Check],
    first: np.ndarray,
    positions: np.ndarray,
    rows: np.ndarray,
) -> tuple[pa.Table, dict[str, int]]:
    """Rejects table (in row order) with each row's first failed check."""
    if positions.size == 0:
        return make_rejects_table([], [], [], None, spec.source_columns), {}
    failed_check = pa.array(first[positions])
    reason = pa.array([check.code for check in checks], pa.string()).take(failed_check)
    fields = pa.array([check.slot for check in checks], pa.string()).take(failed_check)
    constant = [check.detail if isinstance(check.detail, str) else "" for check in checks]
    detail = pa.array(constant, pa.string()).take(failed_check)
    counts = np.bincount(first[positions], minlength=len(checks))
    reasons: dict[str, int] = {}
    for index, check in enumerate(checks):
        if counts[index]:
            reasons[check.code] = reasons.get(check.code, 0) + int(counts[index])
            if not isinstance(check.detail, str):
                mask = first[positions] == index
                detail = pc.replace_with_mask(detail, pa.array(mask), check.detail(positions[mask]))
    raw = source_values(batch, spec.source_columns, positions)
    table = make_rejects_table(rows[positions], reason, detail, raw, spec.source_columns, field=fields)
    return table, reasons


def _normalise_field(field: FieldSpec, values: pa.StringArray, column: str) -> tuple[pa.Array, list[_Check]]:
    label = f'{field.name} (column "{column}")'
    if field.kind == "email":
        return _email(values, label)
    if field.kind == "country_code":
        codes = to_alpha2(values)
        detail = (
            f"{label} is neither an ISO 3166-1 code nor a country name (English or one of 12 European "
            'languages) of exactly one country; use e.g. "DE", "DEU", "276", "Germany" or "Allemagne"'
        )
        return _converted(values, codes, _present(codes), "invalid_country", detail)
    if field.kind == "gender":
        return _lookup(values, _GENDERS, "invalid_gender", f"{label} is not one of m, f, male, female")
    if field.kind == "birthdate":
        return _birthdate(values, label)
    if field.kind == "timestamp":
        return _timestamp(values, label, "invalid_created_at")
    if field.max_length is None:
        raise AssertionError(f"text field {field.name} needs a max_length")
    return values, _length_checks(values, label, field.max_length)


def _phone_regions(spec: MappingSpec, cleaned: dict[str, pa.StringArray]) -> pa.StringArray | None:
    """Per row the region national phone numbers are read in: the row's mapped country (countryCode,
    else country), else ``default_phone_region``; None when no row can have one."""
    if spec.column_for("phone") is None:
        return None
    column = spec.column_for("countryCode") or spec.column_for("country")
    if column is None and spec.default_phone_region is None:
        return None
    n = len(cleaned[spec.column_for("phone")])
    regions = to_alpha2(cleaned[column]) if column is not None else pa.nulls(n, pa.string())
    return regions.fill_null(spec.default_phone_region) if spec.default_phone_region else regions


def _phone(
    values: pa.StringArray, label: str, regions: pa.StringArray | None
) -> tuple[pa.Array, list[_Check]]:
    """E.164 values are kept (checked in numpy); national numbers (digits only) with a region are
    converted by phones.py, one parse per distinct (number, region); the rest fails."""
    phone = remove_ascii(values, _PHONE_SEPARATORS)
    ok = _is_e164(phone)
    todo = np.flatnonzero(_present(phone) & ~ok)
    if regions is not None and todo.size:
        at = pa.array(todo)
        candidates = phone.take(at)
        national = _mask(pc.match_substring_regex(candidates, _NATIONAL_SHAPE)) & _present(regions.take(at))
        if national.any():
            picked = pa.array(national)
            converted = national_to_e164(candidates.filter(picked), regions.take(at).filter(picked))
            got = _present(converted)
            replaced = np.zeros(len(values), dtype=bool)
            replaced[todo[national][got]] = True
            ok |= replaced
            phone = pc.replace_with_mask(phone, pa.array(replaced), converted.filter(pa.array(got)))
    detail = (
        f"{label} is neither an international number in E.164 form (+ and country code, e.g. "
        "+14155550123) nor a valid national number of the row's country (or of default_phone_region)"
    )
    return _converted(values, phone, ok, "invalid_phone", detail)


def _custom_property(
    values: pa.StringArray, name: str, column: str, kind: str
) -> tuple[pa.Array, list[_Check]]:
    label = f'custom property {name!r} (column "{column}")'
    if base_type(kind) == "list":
        return _list_property(values, label, list_delimiter(kind))
    if kind == "string":
        return values, _length_checks(values, label, CUSTOM_PROPERTY_MAX_LENGTH)
    converted, ok = cast_property(values, kind)
    detail = f"{label} is not a {kind} ({TYPE_EXAMPLES[kind]})"
    return _converted(values, converted, ok, "invalid_property", detail)


def _list_property(values: pa.Array, label: str, delimiter: str) -> tuple[pa.Array, list[_Check]]:
    """A list column, or a text column split on ``delimiter``, as JSON array text (see lists.py)."""
    lists = values if is_list(values) else clean_lists(split_text(values, delimiter))
    counts = too_many_items(lists)
    checks = []
    if counts.any():
        def detail(positions: np.ndarray) -> pa.Array:
            return pc.binary_join_element_wise(
                f"{label} has ", pa.array(counts[positions]).cast(pa.string()),
                f" items; at most {MAX_LIST_ITEMS} are sent", "")

        checks.append(_Check("too_many_items", counts > 0, detail))
    long = has_long_item(lists)
    if long.any():
        checks.append(_Check("too_long", long, f"{label} has an item over {MAX_ITEM_LENGTH} characters; "
                                               f"at most {MAX_ITEM_LENGTH} per item are sent"))
    return json_arrays(lists), checks


def _converted(
    values: pa.StringArray, converted: pa.Array, ok: np.ndarray, code: str, detail: str
) -> tuple[pa.Array, list[_Check]]:
    """``converted`` as the field's value; a present input value that is not ``ok`` fails with ``code``."""
    return converted, [_Check(code, _present(values) & ~ok, detail)]


def _email(values: pa.StringArray, label: str) -> tuple[pa.Array, list[_Check]]:
    lowered = ascii_lower(values)
    present = _present(values)
    checks = [_Check("missing_email", ~present, f"{label} is empty; every contact needs an e-mail address")]
    checks += _length_checks(lowered, label, EMAIL_MAX_LENGTH, code="invalid_email")
    syntax_ok = _mask(pc.match_substring_regex(lowered, EMAIL_PATTERN))
    checks.append(
        _Check(
            "invalid_email",
            present & ~syntax_ok,
            f"{label} is not a valid address; expected name@domain.tld without spaces, "
            "quotes or consecutive dots",
        )
    )
    local_long = np.zeros(len(values), dtype=bool)
    if (_ints(pc.binary_length(lowered)) > EMAIL_LOCAL_MAX_LENGTH).any():
        local_long = _mask(pc.match_substring_regex(lowered, rf"^[^@]{{{EMAIL_LOCAL_MAX_LENGTH + 1}}}"))
    checks.append(
        _Check(
            "invalid_email",
            syntax_ok & local_long,
            f"{label} has a local part (before the @) over {EMAIL_LOCAL_MAX_LENGTH} characters",
        )
    )
    return lowered, [replace(check, row_level=True) for check in checks]


def _birthdate(values: pa.StringArray, label: str) -> tuple[pa.Array, list[_Check]]:
    """A real calendar date YYYY-MM-DD, optionally followed by an ISO time (its date part is kept).

    The date is checked in numpy on the first ten bytes; the regex only runs on the rare longer values.
    """
    data, starts, lengths = byte_layout(values)
    ok = np.zeros(len(values), dtype=bool)
    candidates = np.flatnonzero(lengths >= 10)
    if candidates.size:
        head = data[starts[candidates, None] + np.arange(10)]
        digits = head.astype(np.int64) - 48
        shaped = ((digits[:, _DATE_DIGITS] >= 0) & (digits[:, _DATE_DIGITS] <= 9)).all(axis=1)
        shaped &= (head[:, 4] == 45) & (head[:, 7] == 45)
        year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
        month = digits[:, 5] * 10 + digits[:, 6]
        day = digits[:, 8] * 10 + digits[:, 9]
        leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
        month_days = _MONTH_DAYS[np.clip(month, 0, 12)] + ((month == 2) & leap)
        ok[candidates] = shaped & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    longer = np.flatnonzero(lengths > 10)
    if longer.size:
        tails = _mask(pc.match_substring_regex(values.take(pa.array(longer)), _BIRTHDATE_SHAPE))
        ok[longer] &= tails
        values = pc.utf8_slice_codeunits(values, 0, 10)
    detail = f"{label} is not a real date in the form YYYY-MM-DD (an ISO timestamp is also accepted)"
    return _converted(values, values, ok, "invalid_birthdate", detail)


def _is_e164(phone: pa.StringArray) -> np.ndarray:
    """``^\\+[1-9][0-9]{6,14}$`` per value, in numpy (a regex costs several times more)."""
    data, starts, lengths = byte_layout(phone)
    ok = (lengths >= 8) & (lengths <= 16)
    at = np.flatnonzero(ok)
    if at.size == 0:
        return ok
    not_digit = np.concatenate([[0], np.cumsum((data < 48) | (data > 57), dtype=np.int64)])
    begin, end = starts[at], starts[at] + lengths[at]
    ok[at] = (
        (data[begin] == 43)
        & (data[begin + 1] >= 49)
        & (data[begin + 1] <= 57)
        & (not_digit[end] - not_digit[begin + 1] == 0)
    )
    return ok


def _lookup(
    values: pa.StringArray, table: tuple[pa.Array, pa.Array], code: str, detail: str
) -> tuple[pa.Array, list[_Check]]:
    """Case-insensitive translation through a small (accepted → canonical) table; the rest fails."""
    accepted, canonical = table
    translated = pc.take(canonical, pc.index_in(pc.utf8_lower(values), value_set=accepted))
    return _converted(values, translated, _present(translated), code, detail)


def _length_checks(values: pa.StringArray, label: str, limit: int, *, code: str = "too_long") -> list[_Check]:
    """Rows whose value has more than ``limit`` characters. Byte length bounds character length, so
    characters are only counted for the few values with more than ``limit`` bytes."""
    byte_lengths = _ints(pc.binary_length(values))
    over = np.flatnonzero(byte_lengths > limit)
    if over.size == 0:
        return []
    chars = np.zeros(len(values), dtype=np.int64)
    chars[over] = _ints(pc.utf8_length(values.take(pa.array(over))))
    failed = chars > limit

    def detail(positions: np.ndarray) -> pa.Array:
        counts = pa.array(chars[positions]).cast(pa.string())
        return pc.binary_join_element_wise(
            f"{label} is ", counts, f" characters; Omnisend accepts at most {limit}", ""
        )

    return [_Check(code, failed, detail)]


def _mask(values: pa.Array) -> np.ndarray:
    return values.fill_null(False).to_numpy(zero_copy_only=False)


def _present(values: pa.Array) -> np.ndarray:
    return _mask(pc.is_valid(values))


def _ints(values: pa.Array) -> np.ndarray:
    return values.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
