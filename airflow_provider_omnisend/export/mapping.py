"""The Omnisend field catalogue and ``MappingSpec``: which lake column feeds which Omnisend field.

Why a validated spec object: every mistake a user can make in the mapping (an unknown field, a column
that is not in the export, too many tags) is found here, before any byte is read from the lake or sent
to Omnisend, and the error names the valid choices.

Field limits: Omnisend's OpenAPI (2026-03-15) declares no lengths for contact text fields. We cap names,
address, city, state and country at 255 characters (the usual database column size behind such forms),
postal codes at 32, custom property values at 2048 and tags at 255: a longer value is almost surely a
data error (a pasted document, a concatenation bug), and leaving the value out with a reason (or, with
``on_invalid_field="reject_row"``, rejecting the row) is better than having Omnisend fail or truncate it
somewhere we cannot see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from airflow_provider_omnisend.export.phones import SUPPORTED_REGIONS
from airflow_provider_omnisend.export.typed import PROPERTY_TYPES, is_property_type

FieldKind = Literal["email", "phone", "text", "country_code", "gender", "birthdate", "timestamp"]

#: Bump when the JSON produced for the same mapping changes, so every fingerprint changes with it.
PAYLOAD_FORMAT_VERSION = 1

CHANNEL_STATUSES: tuple[str, ...] = ("subscribed", "nonSubscribed", "unsubscribed")
#: ``on_invalid_field`` choices (see normalize.py): the first is the default.
ON_INVALID_FIELD: tuple[str, ...] = ("drop_field", "reject_row")
MAX_TAGS = 100  # ContactRequest.tags maxItems
MAX_TAG_LENGTH = 255
MAX_CUSTOM_PROPERTY_NAME_LENGTH = 128
CUSTOM_PROPERTY_MAX_LENGTH = 2048

#: Column names in the normalised table for channel statuses and custom properties (fields use their name).
EMAIL_STATUS_SLOT = "channels.email"
SMS_STATUS_SLOT = "channels.sms"
STATUS_CHANGED_AT_SLOT = "channels.statusChangedAt"
#: ContactConsentRequest members, in payload order; ``createdAt`` is an RFC 3339 timestamp.
CONSENT_FIELDS: tuple[str, ...] = ("createdAt", "source", "ip", "userAgent")
CONSENT_MAX_LENGTH = 1024


def consent_slot(name: str) -> str:
    """Column name, in the normalised table, of consent member ``name``."""
    return f"consent.{name}"


def custom_property_slot(name: str) -> str:
    """Column name, in the normalised table, of custom property ``name``."""
    return f"customProperties.{name}"


class MappingError(ValueError):
    """The mapping configuration cannot work; the message says what is wrong and what is allowed."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One mappable Omnisend contact field: how its values are checked and how long they may be."""

    name: str
    kind: FieldKind
    max_length: int | None
    description: str


#: Catalogue order is payload order and the order in which row problems are checked.
FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("email", "email", 254, "e-mail address (required; lower-cased)"),
        FieldSpec("phone", "phone", None, "E.164, or national (read in the row's country's format)"),
        FieldSpec("firstName", "text", 255, "first name"),
        FieldSpec("lastName", "text", 255, "last name"),
        FieldSpec("address", "text", 255, "street address"),
        FieldSpec("city", "text", 255, "city"),
        FieldSpec("state", "text", 255, "state or region"),
        FieldSpec("postalCode", "text", 32, "postal or ZIP code"),
        FieldSpec("country", "text", 255, "country name (free text)"),
        FieldSpec("countryCode", "country_code", None, "ISO 3166-1 alpha-2; names and alpha-3 converted"),
        FieldSpec("gender", "gender", None, "m or f (male/female accepted)"),
        FieldSpec("birthdate", "birthdate", None, "YYYY-MM-DD (a timestamp keeps its date)"),
        FieldSpec("createdAt", "timestamp", None, "RFC 3339 timestamp, sent as is"),
    )
}


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """A channel status taken from a column, or the same constant for every row."""

    column: str | None = None
    constant: str | None = None

    def as_config(self) -> dict[str, str]:
        return {"column": self.column} if self.column is not None else {"constant": str(self.constant)}


#: A value taken from a column or the same constant for every row (same shape as a channel status).
Source = ChannelStatus


@dataclass(frozen=True, slots=True)
class MappingSpec:
    """A validated mapping. Build it with :meth:`MappingSpec.build`, not the constructor."""

    fields: tuple[tuple[str, str], ...]
    custom_properties: tuple[tuple[str, str], ...]
    tags: tuple[str, ...]
    email_status: ChannelStatus | None
    sms_status: ChannelStatus | None
    send_welcome_message: bool
    #: The segment's own tag with ``{segment}`` filled in (also in ``tags``); None when turned off.
    segment_tag: str | None = None
    #: What an invalid optional field does: ``drop_field`` (send the contact without it, with a field
    #: warning) or ``reject_row``. Not part of ``config_digest``: it changes which rows are sent, not the
    #: bytes sent for a row.
    on_invalid_field: str = "drop_field"
    #: Region (ISO alpha-2) of national phone numbers in rows without a mapped country; None = none.
    default_phone_region: str | None = None
    #: ``(property name, type)`` for custom properties not sent as strings (see typed.py).
    custom_property_types: tuple[tuple[str, str], ...] = ()
    #: When the mapped channel statuses last changed (sent as ``statusChangedAt``); None = not sent.
    status_changed_at: Source | None = None
    #: ``(consent member, source)`` sent as the e-mail identifier's ``consent``.
    consent: tuple[tuple[str, Source], ...] = ()

    @classmethod
    def build(
        cls,
        mapping: Mapping[str, str],
        *,
        custom_properties: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
        segment: str | None = None,
        segment_tag: str | None = "segment: {segment}",
        email_status: str | Mapping[str, str] | None = None,
        sms_status: str | Mapping[str, str] | None = None,
        send_welcome_message: bool = False,
        on_invalid_field: str = "drop_field",
        default_phone_region: str | None = None,
        custom_property_types: Mapping[str, str] | None = None,
        status_changed_at: str | Mapping[str, str] | None = None,
        consent: Mapping[str, str | Mapping[str, str]] | None = None,
        available_columns: Sequence[str] | None = None,
        source_types: Mapping[str, str] | None = None,
    ) -> MappingSpec:
        """Validate a user mapping ``{omnisend_field: source_column}`` and freeze it.

        ``segment_tag`` gets ``{segment}`` replaced by ``segment``; a template with ``{segment}`` and no
        segment adds no tag; ``None`` turns the segment tag off. Channel statuses are a column name or
        ``{"constant": "subscribed"}``. All problems are reported together in one :class:`MappingError`.
        """
        problems: list[str] = []
        if not isinstance(mapping, Mapping):
            raise MappingError(
                f"mapping must be a dict {{omnisend_field: column}}, got {type(mapping).__name__}"
            )
        unknown = [name for name in mapping if name not in FIELDS]
        if unknown:
            problems.append(
                f"unknown Omnisend field(s) {_quoted(unknown)}; valid fields are {_quoted(FIELDS)} "
                "(put anything else under custom_properties)"
            )
        if "email" not in mapping:
            problems.append(
                "the 'email' field is not mapped; map it to the column holding e-mail addresses, "
                "e.g. {'email': 'EmailAddress'}"
            )
        fields = tuple((name, mapping[name]) for name in FIELDS if name in mapping)
        for name, column in fields:
            problems.extend(_column_problem(f"field {name!r}", column))

        props: list[tuple[str, str]] = []
        for name, column in sorted((custom_properties or {}).items()):
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_CUSTOM_PROPERTY_NAME_LENGTH:
                problems.append(
                    f"custom property name {name!r} must be 1..{MAX_CUSTOM_PROPERTY_NAME_LENGTH} characters"
                )
                continue
            problems.extend(_column_problem(f"custom property {name!r}", column))
            props.append((name, column))

        all_tags, own_tag = _resolve_tags(tags, segment, segment_tag, problems)
        email_channel = _channel(email_status, "email_status", problems)
        sms_channel = _channel(sms_status, "sms_status", problems)
        if sms_channel is not None and "phone" not in mapping:
            problems.append(
                "sms_status is set but 'phone' is not mapped; an SMS status belongs to a phone identifier, "
                "so map 'phone' too or drop sms_status"
            )
        if on_invalid_field not in ON_INVALID_FIELD:
            problems.append(
                f"on_invalid_field must be one of {_quoted(ON_INVALID_FIELD)}, got {on_invalid_field!r}"
            )
        region = _phone_region(default_phone_region, problems)
        # a type the source declares for a column (CDM, Parquet) applies unless custom_property_types says
        declared = {name: source_types[column] for name, column in props if column in (source_types or {})}
        if isinstance(custom_property_types, Mapping):
            declared.update(custom_property_types)
        elif custom_property_types is not None:
            declared = custom_property_types  # reported as a problem below
        types = _property_types(declared, [name for name, _ in props], problems)
        others = [("email_status", email_status), ("sms_status", sms_status),
                  ("status_changed_at", status_changed_at)]
        if isinstance(consent, Mapping):
            others += [(f"consent {member!r}", source) for member, source in consent.items()]
        problems.extend(_list_column_problems(source_types, fields, props, types, others))
        changed_at = _source(status_changed_at, "status_changed_at", problems)
        if changed_at is not None and email_status is None and sms_status is None:
            problems.append(
                "status_changed_at is set but no email_status or sms_status is mapped; it dates a channel "
                "status, so map one or drop status_changed_at"
            )
        consent_sources = _consent(consent, problems)
        if not isinstance(send_welcome_message, bool):
            problems.append(f"send_welcome_message must be true or false, got {send_welcome_message!r}")

        spec = cls(
            fields=fields,
            custom_properties=tuple(props),
            tags=all_tags,
            email_status=email_channel,
            sms_status=sms_channel,
            send_welcome_message=bool(send_welcome_message),
            segment_tag=own_tag,
            on_invalid_field=on_invalid_field,
            default_phone_region=region,
            custom_property_types=types,
            status_changed_at=changed_at,
            consent=consent_sources,
        )
        if available_columns is not None and not problems:
            available = set(available_columns)
            missing = [column for column in spec.source_columns if column not in available]
            if missing:
                problems.append(
                    f"column(s) {_quoted(missing)} are not in the export; available columns are "
                    f"{_quoted(available_columns)}"
                )
        if problems:
            raise MappingError("invalid Omnisend mapping:\n- " + "\n- ".join(problems))
        return spec

    def property_type(self, name: str) -> str:
        """The type custom property ``name`` is sent as (``string`` unless declared otherwise)."""
        return dict(self.custom_property_types).get(name, "string")

    def column_for(self, field: str) -> str | None:
        """The source column mapped to Omnisend ``field``, or None."""
        return dict(self.fields).get(field)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Every lake column the reader must read, each once, in a stable order."""
        columns = [column for _, column in self.fields]
        columns += [column for _, column in self.custom_properties]
        sources = [self.email_status, self.sms_status, self.status_changed_at, *(s for _, s in self.consent)]
        columns += [s.column for s in sources if s is not None and s.column]
        return tuple(dict.fromkeys(columns))

    @property
    def config_digest(self) -> str:
        """Stable digest of the whole mapping configuration.

        It salts every item fingerprint: after any mapping change every contact counts as changed and is
        sent again. That is deliberate: the new mapping may alter what Omnisend holds for everyone.
        """
        config = {
            "format": PAYLOAD_FORMAT_VERSION,
            "fields": self.fields,
            "custom_properties": self.custom_properties,
            "tags": self.tags,
            "email_status": self.email_status.as_config() if self.email_status else None,
            "sms_status": self.sms_status.as_config() if self.sms_status else None,
            "send_welcome_message": self.send_welcome_message,
        }
        # only when set, so the digests of existing mappings stay the same
        if self.default_phone_region is not None:
            config["default_phone_region"] = self.default_phone_region
        if self.custom_property_types:
            config["custom_property_types"] = self.custom_property_types
        if self.status_changed_at is not None:
            config["status_changed_at"] = self.status_changed_at.as_config()
        if self.consent:
            config["consent"] = [(name, source.as_config()) for name, source in self.consent]
        return hashlib.sha256(orjson.dumps(config, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _quoted(names: Iterable[object]) -> str:
    # A column "name" with an '@' is a data row read as a header: never echo a customer's e-mail.
    return ", ".join("<a value containing '@', redacted>" if "@" in str(n) else repr(n) for n in names)


def _column_problem(what: str, column: object) -> list[str]:
    if not isinstance(column, str) or not column:
        return [f"{what} must name a source column (a non-empty string), got {column!r}"]
    return []


def _resolve_tags(
    tags: Sequence[str], segment: str | None, segment_tag: str | None, problems: list[str]
) -> tuple[tuple[str, ...], str | None]:
    """All tags of every contact (de-duplicated, in order), and the segment's own tag among them."""
    if isinstance(tags, str):
        problems.append(f"tags must be a list of strings, not the single string {tags!r}")
        return (), None
    resolved = list(tags)
    own: str | None = None
    if segment_tag is not None and (segment is not None or "{segment}" not in segment_tag):
        own = segment_tag.replace("{segment}", segment or "")
        resolved.append(own)
    for tag in resolved:
        if not isinstance(tag, str) or not tag.strip():
            problems.append(f"tag {tag!r} is empty; every tag needs visible text")
        elif len(tag) > MAX_TAG_LENGTH:
            problems.append(f"tag {tag[:40]!r}... is {len(tag)} characters; the limit is {MAX_TAG_LENGTH}")
    unique = tuple(dict.fromkeys(t.strip() for t in resolved if isinstance(t, str)))
    if len(unique) > MAX_TAGS:
        problems.append(
            f"{len(unique)} tags configured (including the segment tag); Omnisend accepts at most {MAX_TAGS}"
        )
    return unique, (own.strip() if isinstance(own, str) else None)


def _channel(value: str | Mapping[str, str] | None, what: str, problems: list[str]) -> ChannelStatus | None:
    """A channel status source: like any source, with its constant one of ``CHANNEL_STATUSES``."""
    source = _source(value, what, problems, constants=CHANNEL_STATUSES)
    if source is not None and source.constant is not None and source.constant not in CHANNEL_STATUSES:
        problems.append(f"{what} constant {source.constant!r} is not one of {_quoted(CHANNEL_STATUSES)}")
    return source


def _phone_region(value: str | None, problems: list[str]) -> str | None:
    if value is None or value == "":
        return None
    region = str(value).strip().upper()
    if region not in SUPPORTED_REGIONS:
        problems.append(
            f"default_phone_region {value!r} is not a region with phone numbering data; use an ISO 3166-1 "
            "alpha-2 code such as 'FR', 'DE' or 'US'"
        )
        return None
    return region


def _property_types(
    types: Mapping[str, str] | None, properties: Sequence[str], problems: list[str]
) -> tuple[tuple[str, str], ...]:
    """Declared non-string types of mapped custom properties, sorted by name."""
    if not types:
        return ()
    if not isinstance(types, Mapping):
        problems.append(f"custom_property_types must be a dict {{name: type}}, not {type(types).__name__}")
        return ()
    declared: list[tuple[str, str]] = []
    for name, kind in sorted(types.items()):
        if name not in properties:
            problems.append(
                f"custom_property_types names {name!r}, which is not a mapped custom property; mapped are "
                f"{_quoted(properties)}"
            )
        elif not is_property_type(kind):
            problems.append(
                f"custom property {name!r} type {kind!r} is not one of {_quoted(PROPERTY_TYPES)} (or "
                "'list:' followed by one delimiter character, e.g. 'list:|'; not a line break or control "
                "character, which cleaning turns into a space or removes)")
        elif kind != "string":
            declared.append((name, kind))
    return tuple(declared)


def _list_column_problems(
    source_types: Mapping[str, str] | None,
    fields: Sequence[tuple[str, str]],
    props: Sequence[tuple[str, str]],
    types: Sequence[tuple[str, str]],
    others: Sequence[tuple[str, object]],
) -> list[str]:
    """A column the source declares as a list can only feed a custom property sent as a list."""
    lists = {column for column, kind in (source_types or {}).items() if kind == "list"}
    if not lists:
        return []
    declared = dict(types)
    users = [f"field {name!r}" for name, column in fields if column in lists]
    users += [f"custom property {name!r} (declared {declared.get(name, 'string')!r})"
              for name, column in props if column in lists and not declared.get(name, "").startswith("list")]
    for what, value in others:
        column = value.get("column") if isinstance(value, Mapping) else value
        if column in lists:
            users.append(what)
    if not users:
        return []
    return [f"{', '.join(users)} use(s) a column holding lists (an array in the lake); a list can only "
            "be sent as a custom property of type 'list' (the default for such a column): map it under "
            "custom_properties without another type, or map another column"]


def _source(
    value: str | Mapping[str, str] | None, what: str, problems: list[str], *,
    constants: Sequence[str] | None = None,
) -> Source | None:
    """A column name, ``{"column": name}`` or ``{"constant": text}`` (``constants``: the allowed ones,
    named in the error)."""
    if value is None:
        return None
    if isinstance(value, str):
        problems.extend(_column_problem(what, value))
        return Source(column=value)
    if isinstance(value, Mapping) and set(value) == {"column"}:
        problems.extend(_column_problem(what, value["column"]))
        return Source(column=value["column"])
    if isinstance(value, Mapping) and set(value) == {"constant"} and (
        constants is not None or isinstance(value["constant"], str)
    ):
        return Source(constant=value["constant"])
    allowed = "text" if constants is None else f"one of {_quoted(constants)}"
    problems.append(f"{what} must be a column name or {{'constant': {allowed}}}, got {value!r}")
    return None


def _consent(
    consent: Mapping[str, str | Mapping[str, str]] | None, problems: list[str]
) -> tuple[tuple[str, Source], ...]:
    if not consent:
        return ()
    if not isinstance(consent, Mapping):
        problems.append(f"consent must be a dict {{member: column}}, not {type(consent).__name__}")
        return ()
    unknown = [name for name in consent if name not in CONSENT_FIELDS]
    if unknown:
        problems.append(f"unknown consent member(s) {_quoted(unknown)}; valid are {_quoted(CONSENT_FIELDS)}")
    sources = [(name, _source(consent[name], f"consent {name!r}", problems)) for name in CONSENT_FIELDS
               if name in consent]
    return tuple((name, source) for name, source in sources if source is not None)
