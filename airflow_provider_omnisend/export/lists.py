"""Array custom properties: list columns and delimited text sent as JSON arrays of strings, vectorised.

Why: Omnisend stores a custom property as a list value when it receives a JSON array (its profile data
types: text, number, boolean, date, list), and a segment can then ask whether the list contains a value.
A Parquet or Delta ``list<string>`` column (read as ``list<string>`` by lake/batches.py) is always sent
so; a text column is split into one when its property is declared ``"list"`` (on ``;``) or
``"list:<delimiter>"`` (one character, e.g. ``"list:|"``).

Every item is cleaned like any value (control characters removed, white space trimmed). Null and empty
items are left out, and a list left empty is not sent at all: like an empty text value, it must not
blank what Omnisend holds. The 2026-03-15 spec declares ``customProperties`` free-form, with no limit;
we cap a list at ``MAX_LIST_ITEMS`` items (the spec's one array of strings on a contact, ``tags``, has
``maxItems`` 100) of at most ``MAX_ITEM_LENGTH`` characters each (a tag's length), so that one property
cannot outgrow a batch body. A list over either cap is a field warning (``too_many_items``,
``too_long``): the contact is sent without that property.

All of it is Arrow and numpy over the flattened items: no Python object per row or item.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_omnisend.export.text import clean_text, json_escape
from airflow_provider_omnisend.lake.batches import column_as_string, is_list_type

MAX_LIST_ITEMS = 100
MAX_ITEM_LENGTH = 255
LIST_DELIMITER = ";"


def is_list(values: pa.Array | pa.ChunkedArray) -> bool:
    return is_list_type(values.type)


def string_lists(values: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    """Any list layout as ``list<string>`` (the lake reader gives that already; other callers may not)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type == pa.list_(pa.string()):
        return values
    return column_as_string(values, name="a list column", where="the export batch")


def split_text(values: pa.StringArray, delimiter: str = LIST_DELIMITER) -> pa.ListArray:
    """Each (cleaned) text value split on ``delimiter``; a null value stays null."""
    return pc.split_pattern(values, pattern=delimiter)


def clean_lists(lists: pa.ListArray | pa.ChunkedArray) -> pa.ListArray:
    """Items cleaned like any value, null and empty items left out, an empty list turned into null."""
    lists = string_lists(lists)
    lengths = _lengths(lists)
    items = clean_text(lists.flatten())
    keep = pc.is_valid(items).to_numpy(zero_copy_only=False)
    if keep.all() and (lengths > 0).all() and not lists.null_count:
        return pa.ListArray.from_arrays(_offsets(lengths), items)
    parents = np.repeat(np.arange(len(lists)), lengths)
    kept = np.bincount(parents[keep], minlength=len(lists))
    return pa.ListArray.from_arrays(_offsets(kept), items.filter(pa.array(keep)), mask=pa.array(kept == 0))


def too_many_items(lists: pa.ListArray) -> np.ndarray:
    """Per row the number of items when over ``MAX_LIST_ITEMS``, else 0."""
    lengths = _lengths(lists)
    return np.where(lengths > MAX_LIST_ITEMS, lengths, 0)


def has_long_item(lists: pa.ListArray) -> np.ndarray:
    """Rows with an item over ``MAX_ITEM_LENGTH`` characters (bytes first: characters only for the few
    items with more bytes than that)."""
    items = lists.flatten()
    parents = np.repeat(np.arange(len(lists)), _lengths(lists))
    long = np.zeros(len(lists), dtype=bool)
    over = np.flatnonzero(_ints(pc.binary_length(items)) > MAX_ITEM_LENGTH)
    if over.size:
        chars = _ints(pc.utf8_length(items.take(pa.array(over))))
        long[parents[over[chars > MAX_ITEM_LENGTH]]] = True
    return long


def json_arrays(lists: pa.ListArray) -> pa.StringArray:
    """Each list as a JSON array of strings (``["a","b"]``; a null item as ``null``); null stays null."""
    lists = string_lists(lists)
    lengths = _lengths(lists)
    quoted = pc.binary_join_element_wise('"', json_escape(lists.flatten()), '"', "").fill_null("null")
    joined = pc.binary_join(pa.ListArray.from_arrays(_offsets(lengths), quoted, mask=pc.is_null(lists)), ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _lengths(lists: pa.ListArray) -> np.ndarray:
    return _ints(pc.list_value_length(lists))


def _offsets(lengths: np.ndarray) -> pa.Int32Array:
    return pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())


def _ints(values: pa.Array) -> np.ndarray:
    return values.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
