"""Strategies, an independent oracle and a recording API stand-in for ``test_properties.py``.

The oracle re-derives, in plain Python and from the documented rules only, what must happen to each
input row: cleaning (control characters out, line breaks to a space, Unicode white space / ZWSP / BOM
trimmed, empty → null), the first failed check in the documented order, first-valid-occurrence-wins
de-duplication on the trimmed, ASCII-lower-cased e-mail, and the ContactRequest item the row becomes.
Whether an e-mail is valid is not computed from the product's pattern: the strategies label every
generated address as valid, invalid or missing by construction.
"""

from __future__ import annotations

import itertools
import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
from hypothesis import strategies as st

from airflow_provider_omnisend.export.mapping import MappingSpec
from airflow_provider_omnisend.export.payload import BODY_OVERHEAD_BYTES

# ------------------------------------------------------------------------------------------ the mapping
EMAIL, PHONE, FIRST, LAST, BIO, NOTES = "Email", "Phone", "First", "Last", "Bio", "Notes"
COLUMNS = (EMAIL, PHONE, FIRST, LAST, BIO, NOTES)
SEGMENT = "VIP"
SPEC = MappingSpec.build(
    {"email": EMAIL, "phone": PHONE, "firstName": FIRST, "lastName": LAST},
    custom_properties={"notes": NOTES, "bio": BIO},
    segment=SEGMENT,
    on_invalid_field="reject_row",  # the reference below rejects a row for its first problem
)
TAGS = [f"segment: {SEGMENT}"]
#: Limits from the documented field catalogue (mapping.py module docstring), spelled out here.
NAME_LIMIT = 255
PROPERTY_LIMIT = 2048
#: (column, Omnisend field, limit) in the documented check order after e-mail and phone: fields in
#: catalogue order, then custom properties by name.
TEXT_CHECKS = ((FIRST, "firstName", NAME_LIMIT), (LAST, "lastName", NAME_LIMIT),
               (BIO, "bio", PROPERTY_LIMIT), (NOTES, "notes", PROPERTY_LIMIT))
#: The bytes a contacts batch body puts before and after its comma-separated items.
BODY_PREFIX = b'{"method":"POST","endpoint":"contacts","items":['
BODY_SUFFIX = b"]}"

# ------------------------------------------------------------------------------------------ strategies
#: Characters at the ends of a value that cleaning removes: white space of every kind, ZWSP, BOM, line
#: breaks and control characters (C0, DEL, C1).
EDGE_NOISE = " \t\n\r\v\f\x85\u00a0\u1680\u2003\u2028\u2029\u202f\u3000\u200b\ufeff\x00\x07\x1f\x7f\x9f"
NASTY_UNITS = (
    "Zoë", "O'Neil \"Jr\"", "back\\slash\\", "مرحبا بالعالم", "שָׁלוֹם", "👩‍👩‍👧‍👦", "🎉", "e\u0301\u0302\u0303",
    "line\u2028sep", "tab\tnew\nline\r\n", "\x00\x01\x1f", "</script>", "\\u0041", "\ud7ff\ue000\U0010fffd",
    "李小龍", "Åsa-Britt", "\u200fRTL\u200e", "ß", "a", "  ", "\u200b", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
)
_LOCAL_CHARS = string.ascii_lowercase + string.digits + "_+-"
_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@dataclass(frozen=True)
class Address:
    """A generated e-mail before decoration; ``kind`` is ``valid``, ``invalid`` or ``missing``."""

    kind: str
    text: str | None


@st.composite
def valid_addresses(draw: st.DrawFn) -> str:
    atoms = draw(st.lists(st.text(_LOCAL_CHARS, min_size=1, max_size=8), min_size=1, max_size=3))
    labels = draw(st.lists(_LABEL, min_size=1, max_size=3))
    tld = draw(st.text(string.ascii_lowercase, min_size=2, max_size=6))
    return f"{'.'.join(atoms)}@{'.'.join(labels)}.{tld}"


def _long_address(local_length: int, last_label: int) -> str:
    """``local_length`` characters @ two 63-character labels, one of ``last_label``, then ``.com``."""
    return f"{'l' * local_length}@{'a' * 63}.{'b' * 63}.{'c' * last_label}.com"


_INVALID_SHAPES = (
    lambda local, domain: local + domain,  # no @
    lambda local, domain: f"{local}..x@{domain}",
    lambda local, domain: f".{local}@{domain}",
    lambda local, domain: f"{local}.@{domain}",
    lambda local, domain: f"{local}@{domain.replace('.', '..', 1)}",
    lambda local, domain: f"{local}@{domain}.",
    lambda local, domain: f"{local} x@{domain}",
    lambda local, domain: f"{local}\t@{domain}",
    lambda local, domain: f"{local}ë@{domain}",
    lambda local, domain: f"{local}\u212a@{domain}",  # KELVIN SIGN: str.lower() makes it "k"
    lambda local, domain: f"ａ{local}@{domain}",  # fullwidth a
    lambda local, domain: f"{local}@ä{domain}",
    lambda local, domain: f"{local}@{domain.split('.')[0]}",  # a single label, no TLD
    lambda local, domain: f"{local}@{domain}.c0m",
    lambda local, domain: f"{local}@{domain}.c",
    lambda local, domain: f"{local}@{local}@{domain}",
    lambda local, domain: f'"{local}"@{domain}',
    lambda local, domain: f"{local}@-{domain}",
    lambda local, domain: f"{local}@{domain.split('.')[0]}-.{domain}",
)


@st.composite
def addresses(draw: st.DrawFn) -> Address:
    """A labelled address: valid (incl. exactly at the 64/254 limits), invalid by construction, or missing."""
    kind = draw(st.sampled_from(["valid"] * 4 + ["edge", "invalid", "invalid", "missing"]))
    if kind == "valid":
        return Address("valid", draw(valid_addresses()))
    if kind == "edge":
        local = draw(st.sampled_from([63, 64, 65]))
        last = draw(st.sampled_from([1, 56, 57, 58, 60]))  # 197 + last characters in all
        valid = local <= 64 and local + 133 + last <= 254
        return Address("valid" if valid else "invalid", _long_address(local, last))
    if kind == "invalid":
        local, domain = draw(valid_addresses()).split("@")
        return Address("invalid", draw(st.sampled_from(_INVALID_SHAPES))(local, domain))
    return Address("missing", draw(st.sampled_from([None, "", "   ", "\u200b\ufeff", "\t\r\n", "\x00\x85"])))


@st.composite
def decorated(draw: st.DrawFn, address: Address) -> str | None:
    """The address as a lake might hold it: any ASCII case and noise at both ends."""
    if address.text is None:
        return None
    text = address.text
    case = draw(st.sampled_from(["same", "upper", "mixed"]))
    if case == "upper":
        text = "".join(c.upper() if c in string.ascii_lowercase else c for c in text)
    elif case == "mixed":
        mask = draw(st.integers(0, 2**32 - 1))
        flips = [bool(mask >> (i % 32) & 1) for i in range(len(text))]
        text = "".join(c.upper() if flip and c in string.ascii_lowercase else c for c, flip in zip(
            text, flips, strict=True))
    noise = st.text(EDGE_NOISE, max_size=3)
    return draw(noise) + text + draw(noise)


def nasty_text(long_lengths: st.SearchStrategy[int]) -> st.SearchStrategy[str | None]:
    """Null, short arbitrary Unicode, a short nasty value, or (one draw in four) a nasty unit repeated to
    one of ``long_lengths`` (pasted text, a concatenation bug)."""

    def repeated(lengths: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
        return st.builds(
            lambda unit, n, pad: pad + (unit * (n // len(unit) + 1))[:n] + pad,
            st.sampled_from(NASTY_UNITS),
            lengths,
            st.text(EDGE_NOISE, max_size=2),
        )

    short = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
    return st.one_of(st.none(), short, repeated(st.integers(0, 40)), repeated(long_lengths))


#: Lengths around the limits (255 for names, 2048 for custom properties) and up to 10 000 characters
#: (tens of KB once UTF-8 encoded and escaped), so that long contacts meet the byte cap.
NAMES = nasty_text(st.one_of(st.integers(250, 262), st.integers(0, 400)))
PROPERTIES = nasty_text(st.one_of(st.integers(2_040, 2_056), st.integers(0, 2_048), st.integers(0, 10_000)))
#: Values within every limit (a property may still be 2048 characters, up to 8 KB): most rows are valid.
TAME_NAMES = nasty_text(st.integers(0, 255))
TAME_PROPERTIES = nasty_text(st.integers(0, 2_048))
PHONES = st.one_of(
    st.none(),
    st.none(),
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.from_regex(r" ?\+[1-9][0-9]{0,3}[ .-]?\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ -]?[0-9]{2,4} ?", fullmatch=True),
    st.text("0123456789+-(). x\u00a0", max_size=18),
)
TAME_PHONES = st.one_of(st.none(), st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))


@dataclass
class Rows:
    """Generated input: one dict per row (column → raw value) and each row's e-mail label."""

    rows: list[dict[str, str | None]]
    labels: list[str]

    def table(self, types: Sequence[str] | None = None) -> pa.Table:
        types = types or ["string"] * len(COLUMNS)
        columns = {}
        for column, kind in zip(COLUMNS, types, strict=True):
            values = pa.array([r[column] for r in self.rows], pa.string())
            if kind == "large_string":
                values = values.cast(pa.large_string())
            elif kind == "dictionary":
                values = values.dictionary_encode()
            columns[column] = values
        return pa.table(columns)


@st.composite
def input_rows(draw: st.DrawFn, max_rows: int = 30) -> Rows:
    """Rows whose e-mail is often a case/space variant of an earlier row's address (a duplicate)."""
    count = draw(st.integers(0, max_rows))
    used: list[Address] = []
    rows: list[dict[str, str | None]] = []
    labels: list[str] = []
    for _ in range(count):
        if used and draw(st.booleans()):
            address = used[draw(st.integers(0, len(used) - 1))]
        else:
            address = draw(addresses())
            used.append(address)
        if draw(st.integers(0, 3)):  # a tame row: only its e-mail may be wrong
            names, properties, phones = TAME_NAMES, TAME_PROPERTIES, TAME_PHONES
        else:
            names, properties, phones = NAMES, PROPERTIES, PHONES
        rows.append({EMAIL: draw(decorated(address)), PHONE: draw(phones), FIRST: draw(names),
                     LAST: draw(names), BIO: draw(properties), NOTES: draw(properties)})
        labels.append(address.kind)
    return Rows(rows, labels)


COLUMN_TYPES = st.lists(st.sampled_from(["string", "large_string", "dictionary"]),
                        min_size=len(COLUMNS), max_size=len(COLUMNS))


@st.composite
def splits(draw: st.DrawFn, table: pa.Table) -> list[pa.RecordBatch]:
    """``table`` as record batches cut at drawn points: slices with offsets, empty batches included."""
    batch = pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns], schema=table.schema)
    cuts = sorted(draw(st.lists(st.integers(0, table.num_rows), max_size=6)))
    bounds = [0, *cuts, table.num_rows]
    return [batch.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


# ------------------------------------------------------------------------------------------ the oracle
_LINE_BREAKS = re.compile(r"[\t\n\r\v\f\x85]+")
_PHONE_SEPARATORS = re.compile(r"[ \-.()]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_DUPLICATE_OF = re.compile(r"^same e-mail as row (\d+), ")


def _trimmable(char: str) -> bool:
    return char.isspace() or char in "\u200b\ufeff"


def clean(value: str | None) -> str | None:
    """The documented cleaning: line breaks → space, control characters out, trim, empty → null."""
    if value is None:
        return None
    value = _LINE_BREAKS.sub(" ", value)
    value = "".join(c for c in value if unicodedata.category(c) != "Cc")
    start, stop = 0, len(value)
    while start < stop and _trimmable(value[start]):
        start += 1
    while stop > start and _trimmable(value[stop - 1]):
        stop -= 1
    return value[start:stop] or None


def ascii_lower(value: str) -> str:
    return "".join(c.lower() if c in string.ascii_uppercase else c for c in value)


@dataclass
class Outcome:
    """Where one input row must end: ``sent`` (with its item), or rejected with ``reason``."""

    reason: str | None = None  # None: sent
    winner: int | None = None  # for duplicates
    email: str | None = None
    item: bytes | None = None


@dataclass
class Expected:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def sent_rows(self) -> list[int]:
        return [row for row, o in enumerate(self.outcomes) if o.reason is None]

    @property
    def survivors(self) -> list[int]:
        """Rows that pass validation and de-duplication (what staging holds), in input order."""
        return [row for row, o in enumerate(self.outcomes) if o.reason in (None, "item_too_large")]

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            if outcome.reason is not None:
                counts[outcome.reason] = counts.get(outcome.reason, 0) + 1
        return counts


def reference_item(values: dict[str, str | None]) -> bytes:
    """The ContactRequest the documented item shape gives for one cleaned, valid row."""
    identifiers: list[dict[str, Any]] = [
        {"type": "email", "id": values[EMAIL], "sendWelcomeMessage": False}
    ]
    if values[PHONE] is not None:
        identifiers.append({"type": "phone", "id": values[PHONE], "sendWelcomeMessage": False})
    item: dict[str, Any] = {"identifiers": identifiers}
    for column, name in ((FIRST, "firstName"), (LAST, "lastName")):
        if values[column] is not None:
            item[name] = values[column]
    props = {name: values[column] for column, name in ((BIO, "bio"), (NOTES, "notes")) if values[column]}
    if props:
        item["customProperties"] = props
    item["tags"] = TAGS
    return orjson.dumps(item)


def expected_outcomes(data: Rows, *, max_body_bytes: int | None = None) -> Expected:
    expected = Expected()
    first_row: dict[str, int] = {}
    for row, (raw, label) in enumerate(zip(data.rows, data.labels, strict=True)):
        values = {column: clean(raw[column]) for column in COLUMNS}
        email = values[EMAIL]
        if email is None:
            assert label == "missing", f"generator bug: row {row} labelled {label} has no e-mail"
            expected.outcomes.append(Outcome("missing_email"))
            continue
        assert label != "missing", f"generator bug: row {row} labelled missing has e-mail {email!r}"
        values[EMAIL] = email = ascii_lower(email)
        if values[PHONE] is not None:
            values[PHONE] = _PHONE_SEPARATORS.sub("", values[PHONE])
        reason = "invalid_email" if label == "invalid" else None
        if reason is None and values[PHONE] is not None and not _E164.fullmatch(values[PHONE]):
            reason = "invalid_phone"
        for column, _name, limit in TEXT_CHECKS:
            if reason is None and values[column] is not None and len(values[column]) > limit:
                reason = "too_long"
        if reason is not None:
            expected.outcomes.append(Outcome(reason))
        elif email in first_row:
            expected.outcomes.append(Outcome("duplicate", winner=first_row[email], email=email))
        else:
            first_row[email] = row
            item = reference_item(values)
            too_large = max_body_bytes is not None and len(item) + BODY_OVERHEAD_BYTES > max_body_bytes
            expected.outcomes.append(Outcome("item_too_large" if too_large else None, email=email, item=item))
    return expected


def duplicate_winner(detail: str) -> int:
    match = _DUPLICATE_OF.match(detail)
    assert match, f"a duplicate's detail must name the winning row: {detail!r}"
    return int(match.group(1))
