"""Small helpers on Arrow string arrays, shared by normalisation and payload building.

Why byte scans: most values never contain a control character, quote or backslash. Looking at the raw
UTF-8 data buffer with numpy costs about a millisecond per megabyte, so the comparatively expensive
regex/replace kernels only run on the (rare) columns that need them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_LINE_BREAKS = r"[\t\n\r\v\f\x{85}]+"
_CONTROLS = r"\p{Cc}"


def as_utf8(values: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """``values`` as one ``string`` array (lake columns can be large_string, dictionary or even numbers)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.type != pa.string():
        values = values.cast(pa.string())
    return values


def _offsets(values: pa.StringArray) -> np.ndarray:
    """The ``len(values) + 1`` value offsets (respecting slicing), as positions in the data buffer."""
    offsets_buf = values.buffers()[1]
    if offsets_buf is None:
        return np.zeros(len(values) + 1, dtype=np.int64)
    raw = np.frombuffer(offsets_buf, dtype=np.int32, count=values.offset + len(values) + 1)
    return raw[values.offset :].astype(np.int64)


def value_bytes(values: pa.StringArray) -> np.ndarray:
    """The UTF-8 bytes of all values of ``values`` (respecting slicing), as a zero-copy ``uint8`` view."""
    data_buf = values.buffers()[2]
    if data_buf is None or len(values) == 0:
        return np.empty(0, dtype=np.uint8)
    offsets = _offsets(values)
    return np.frombuffer(data_buf, dtype=np.uint8, count=int(offsets[-1]))[offsets[0] :]


def byte_layout(values: pa.StringArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, starts, lengths)``: the value bytes and each value's start and byte length in them."""
    offsets = _offsets(values)
    relative = offsets - offsets[0]
    return value_bytes(values), relative[:-1], np.diff(relative)


def ascii_lower(values: pa.StringArray) -> pa.StringArray:
    """``pc.ascii_lower`` that is safe for every string array layout.

    pyarrow's ``ascii_lower`` mishandles an array at offset 0 whose first value offset is not 0 (what a
    cast of a sliced ``large_string`` array gives): it writes the lowered bytes from 0 but keeps the old
    offsets, so each value reads a later row's bytes (or past the buffer). Such an array is rebased
    first (new offsets, the text is not copied).
    """
    if values.offset == 0 and len(values):
        offsets = _offsets(values)
        if offsets[0]:
            validity, _, data = values.buffers()
            values = pa.StringArray.from_buffers(
                len(values),
                pa.py_buffer((offsets - offsets[0]).astype(np.int32)),
                data.slice(int(offsets[0])),
                validity,
                values.null_count,
            )
    return pc.ascii_lower(values)


def has_control_chars(values: pa.StringArray) -> bool:
    """True when any value holds a C0 control, DEL or a C1 control (U+0080..U+009F, UTF-8 ``C2 80..9F``)."""
    data = value_bytes(values)
    if data.size == 0:
        return False
    if bool((data < 0x20).any()) or bool((data == 0x7F).any()):
        return True
    lead = data[:-1] == 0xC2
    return bool((lead & (data[1:] >= 0x80) & (data[1:] <= 0x9F)).any())


def contains_byte(values: pa.StringArray, byte: int) -> bool:
    """True when any value contains the ASCII character ``byte``."""
    return bool((value_bytes(values) == byte).any())


def remove_ascii(values: pa.StringArray, characters: str) -> pa.StringArray:
    """``values`` with every occurrence of the given ASCII ``characters`` removed, in numpy.

    Why not a regex replace: for phone numbers this is several times faster. ASCII bytes never occur
    inside a multi-byte UTF-8 sequence, so dropping them byte-wise keeps every value valid UTF-8.
    """
    lookup = np.zeros(256, dtype=bool)
    lookup[np.frombuffer(characters.encode("ascii"), dtype=np.uint8)] = True
    data = value_bytes(values)
    drop = lookup[data]
    if not drop.any():
        return values
    offsets = _offsets(values)
    offsets -= offsets[0]
    dropped = np.concatenate([[0], np.cumsum(drop, dtype=np.int32)])  # dropped[k]: drops in data[:k]
    new_offsets = (offsets - dropped[offsets]).astype(np.int32)
    validity = pc.is_valid(values).buffers()[1] if values.null_count else None
    return pa.StringArray.from_buffers(
        len(values),
        pa.py_buffer(new_offsets),
        pa.py_buffer(np.ascontiguousarray(data[~drop])),
        validity,
        values.null_count,
    )


# First/last bytes that a value starting/ending in a character of TRIM_CHARACTERS can have (a superset:
# a false alarm only costs a trim pass).
_TRIM_FIRST = np.zeros(256, dtype=bool)
_TRIM_FIRST[[9, 10, 11, 12, 13, 32, 0xC2, 0xE1, 0xE2, 0xE3, 0xEF]] = True
_TRIM_LAST = np.zeros(256, dtype=bool)
_TRIM_LAST[[9, 10, 11, 12, 13, 32, *range(0x80, 0x8C), 0x9F, 0xA0, 0xA8, 0xA9, 0xAF, 0xBF]] = True
TRIM_CHARACTERS = (
    " \t\n\r\v\f\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\u200b\ufeff"
)


def trim(values: pa.StringArray) -> pa.StringArray:
    """Strip Unicode white space, NBSP, zero-width space and BOM at both ends; skipped when no value
    starts or ends with a byte such a character can start/end with (the common case)."""
    data, starts, lengths = byte_layout(values)
    filled = np.flatnonzero(lengths)
    if filled.size == 0:
        return values
    first = data[starts[filled]]
    last = data[starts[filled] + lengths[filled] - 1]
    if not (_TRIM_FIRST[first].any() or _TRIM_LAST[last].any()):
        return values
    return pc.utf8_trim(values, characters=TRIM_CHARACTERS)


def empty_to_null(values: pa.StringArray) -> pa.StringArray:
    """Empty strings become null, so "no value" has one spelling downstream (and is left out of payloads)."""
    _data, _starts, lengths = byte_layout(values)
    return with_validity(values, lengths > 0)


def present(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean numpy mask of the non-null values."""
    if values.null_count == 0:
        return np.ones(len(values), dtype=bool)
    return pc.is_valid(values).to_numpy(zero_copy_only=False)


def with_validity(values: pa.StringArray, keep: np.ndarray) -> pa.StringArray:
    """``values`` with every position where ``keep`` is False turned null, without copying the text."""
    valid = present(values) & keep
    if valid.all():
        return values
    bits = np.concatenate([np.zeros(values.offset, dtype=bool), valid]) if values.offset else valid
    _validity, offsets, data = values.buffers()
    return pa.Array.from_buffers(
        values.type,
        len(values),
        [pa.py_buffer(np.packbits(bits, bitorder="little")), offsets, data],
        null_count=int(valid.size - np.count_nonzero(valid)),
        offset=values.offset,
    )


def choose_text(options: list[str], choice: np.ndarray) -> pa.StringArray:
    """Per row the text ``options[choice[row]]``, or null where ``choice`` is -1, built in numpy.

    Why: a constant that must appear only in some rows (a key before a maybe-null value, a comma that
    depends on what came before) costs far less as one prebuilt array than as another join pass.
    """
    encoded = [option.encode("utf-8") for option in options]
    choice = np.asarray(choice, dtype=np.int64)
    lengths = np.array([len(e) for e in encoded] + [0], dtype=np.int64)  # choice -1 → the trailing 0
    row_lengths = lengths[choice]
    offsets = np.zeros(choice.size + 1, dtype=np.int64)
    np.cumsum(row_lengths, out=offsets[1:])
    if len(encoded) == 1:  # rows hold the text or nothing: the data is the text repeated
        data = np.frombuffer(encoded[0] * int(np.count_nonzero(choice >= 0)), dtype=np.uint8)
    else:
        starts = np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.int64)
        source = np.repeat(starts[choice] - offsets[:-1], row_lengths) + np.arange(offsets[-1])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)[source]
    valid = choice >= 0
    nulls = int(choice.size - np.count_nonzero(valid))
    return pa.Array.from_buffers(
        pa.string(),
        choice.size,
        [
            pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None,
            pa.py_buffer(offsets.astype(np.int32)),
            pa.py_buffer(data),
        ],
        null_count=nulls,
    )


def clean_text(values: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Strip control characters, trim white space, turn empty strings into null (see normalize.py)."""
    values = as_utf8(values)
    if has_control_chars(values):
        values = pc.replace_substring_regex(values, _LINE_BREAKS, " ")
        values = pc.replace_substring_regex(values, _CONTROLS, "")
    return empty_to_null(trim(values))


def json_escape(values: pa.Array) -> pa.StringArray:
    """The JSON string-literal body of each value (without the surrounding quotes)."""
    values = as_utf8(values)
    if contains_byte(values, 0x5C):
        values = pc.replace_substring(values, "\\", "\\\\")
    if contains_byte(values, 0x22):
        values = pc.replace_substring(values, '"', '\\"')
    data = value_bytes(values)
    for code in np.unique(data[data < 0x20]).tolist():
        values = pc.replace_substring(values, chr(code), f"\\u{code:04x}")
    return values
