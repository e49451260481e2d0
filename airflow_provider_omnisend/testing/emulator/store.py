"""The emulator's in-memory contact store, sized for a million contacts.

Memory layout (about 0.6 KB per contact, see ``benchmarks/emulator_capacity.py``):

* ``records[seq]``: the contact as compact orjson bytes (short keys, epoch-millisecond times, empty
  fields left out). Contacts are never deleted, so ``seq`` (creation order) indexes every column.
* ``by_email`` / ``by_phone``: identifier -> seq, matched exactly as sent.
* ``updated_ms`` (array of int64) and ``email_status`` (bytearray): columns that the list filters read
  without decoding records.
* ``tag_index``: tag -> set of seqs, for ``GET /contacts?tag=``.

A contact ID is 24 hex characters like Omnisend's: an 8-character prefix that changes on every reset,
then the seq. Record keys: ``c``/``u`` created/updated ms; ``ids`` identifiers, each ``{t: type,
v: value, ch: {channel: [status, statusChangedAt]}, w: last sendWelcomeMessage seen (null when the
last request naming it did not send one), src: source}``; ``p`` profile fields; ``tags``; ``cp``
customProperties; ``cons`` consents ``[channel, createdAt, ip, source, userAgent]``; ``opt`` opt-ins
``[channel, optInAt]``; ``w`` the last sendWelcomeMessage seen on the contact.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

import orjson

from .problems import ProblemError

PROFILE_FIELDS = (
    "firstName",
    "lastName",
    "address",
    "city",
    "state",
    "postalCode",
    "country",
    "countryCode",
    "gender",
    "birthdate",
)
STATUS_CODES = {"nonSubscribed": 0, "subscribed": 1, "unsubscribed": 2}
NO_EMAIL = 255
DEFAULT_CHANNEL = {"email": "email", "phone": "sms"}
MAX_HISTORY = 20  # consents / opt-ins kept per contact


def pack(obj: Any) -> bytes:
    """orjson bytes in an exact-size object: orjson's own result keeps a 4 KiB buffer behind it."""
    return memoryview(orjson.dumps(obj)).tobytes()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fmt_ms(ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 UTC with milliseconds, e.g. 2026-03-15T10:00:00.123Z."""
    secs, millis = divmod(ms, 1000)
    return _fmt_second(secs) + f".{millis:03d}Z"


@lru_cache(maxsize=4096)
def _fmt_second(secs: int) -> str:
    return dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


@lru_cache(maxsize=1024)
def country_code_for(name: str) -> str | None:
    """ISO alpha-2 code for a country name (pycountry), or None."""
    try:
        import pycountry
    except ImportError:  # pragma: no cover - pycountry is a runtime dependency
        return None
    try:
        return pycountry.countries.lookup(name).alpha_2
    except LookupError:
        return None


def encode_cursor(sort: str, key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([sort, key])).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> Any:
    """The sort key a cursor points at; ValueError if it is not one of ours for this sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        csort, key = orjson.loads(raw)
    except Exception as err:
        raise ValueError("malformed cursor") from err
    if csort != sort:
        raise ValueError("cursor was issued for another sort order")
    if sort == "createdAt" and isinstance(key, int):
        return key
    if (
        sort == "updatedAt"
        and isinstance(key, list)
        and len(key) == 2
        and all(isinstance(k, int) for k in key)
    ):
        return tuple(key)
    raise ValueError("malformed cursor")


class ContactStore:
    """Contacts plus the counters that describe what was done to them."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_hex(4)
        self.records: list[bytes] = []
        self.by_email: dict[str, int] = {}
        self.by_phone: dict[str, int] = {}
        self.updated_ms = array("q")
        self.email_status = bytearray()
        self.tag_index: dict[str, set[int]] = {}
        self.tag_version: dict[str, int] = {}
        self.version = 0
        self.welcome_messages = 0
        self.tag_changes = 0
        self._sorted_cache: OrderedDict[Any, tuple[Any, list]] = OrderedDict()

    # ---------------------------------------------------------------- ids and reads

    def __len__(self) -> int:
        return len(self.records)

    def contact_id(self, seq: int) -> str:
        return f"{self.prefix}{seq:016x}"

    def seq_of(self, contact_id: str) -> int | None:
        if len(contact_id) != 24 or not contact_id.startswith(self.prefix):
            return None
        try:
            seq = int(contact_id[8:], 16)
        except ValueError:
            return None
        return seq if 0 <= seq < len(self.records) else None

    def record(self, seq: int) -> dict[str, Any]:
        return orjson.loads(self.records[seq])

    def render(
        self, seq: int, rec: dict[str, Any] | bytes | None = None, *, emulator: bool = False
    ) -> dict[str, Any]:
        """A ContactResponse (``emulator=True`` adds what the test view shows: sendWelcomeMessage, source)."""
        if rec is None:
            rec = self.records[seq]
        if isinstance(rec, bytes):
            rec = orjson.loads(rec)
        out: dict[str, Any] = {"id": self.contact_id(seq)}
        identifiers = []
        statuses: dict[str, dict[str, str]] = {}
        phones = []
        for ident in rec.get("ids", ()):
            channels = {name: {"status": st, "statusChangedAt": at} for name, (st, at) in ident["ch"].items()}
            item: dict[str, Any] = {"id": ident["v"], "type": ident["t"], "channels": channels}
            if emulator:
                item["sendWelcomeMessage"] = ident.get("w")
                if "src" in ident:
                    item["source"] = ident["src"]
            identifiers.append(item)
            if ident["t"] == "email":
                out.setdefault("email", ident["v"])
                if "email" in channels:
                    out.setdefault("status", channels["email"]["status"])
            else:
                phones.append(ident["v"])
            for name, ch in channels.items():
                statuses.setdefault(name, ch)
        if phones:
            out["phone"] = phones
        out["identifiers"] = identifiers
        out["statuses"] = [{"channel": name, **ch} for name, ch in statuses.items()]
        out["consents"] = [
            {
                k: v
                for k, v in zip(("channel", "createdAt", "ip", "source", "userAgent"), c, strict=True)
                if v is not None
            }
            for c in rec.get("cons", ())
        ]
        out["optIns"] = [{"channel": ch, "optInAt": at} for ch, at in rec.get("opt", ())]
        out["segments"] = []
        out["tags"] = rec.get("tags", [])
        out["customProperties"] = rec.get("cp", {})
        out.update(rec.get("p", {}))
        out["createdAt"] = fmt_ms(rec["c"])
        out["updatedAt"] = fmt_ms(rec["u"])
        if emulator:
            out["sendWelcomeMessage"] = rec.get("w")
        return out

    # ---------------------------------------------------------------- writes

    def _save(self, seq: int, rec: dict[str, Any], old_tags: Iterable[str] = ()) -> bytes:
        data = pack(rec)
        status = NO_EMAIL
        for ident in rec.get("ids", ()):
            if ident["t"] == "email":
                ch = ident["ch"].get("email")
                status = STATUS_CODES[ch[0]] if ch else NO_EMAIL
                break
        if seq == len(self.records):
            self.records.append(data)
            self.updated_ms.append(rec["u"])
            self.email_status.append(status)
        else:
            self.records[seq] = data
            self.updated_ms[seq] = rec["u"]
            self.email_status[seq] = status
        old = set(old_tags)
        new = rec.get("tags", ())
        for tag in new:
            if tag not in old:
                self.tag_index.setdefault(tag, set()).add(seq)
                self.tag_version[tag] = self.tag_version.get(tag, 0) + 1
        if old:
            for tag in old.difference(new):
                members = self.tag_index.get(tag)
                if members is not None:
                    members.discard(seq)
                    self.tag_version[tag] = self.tag_version.get(tag, 0) + 1
        self.version += 1
        return data

    def upsert(self, body: dict[str, Any]) -> tuple[bool, int, bytes]:
        """POST /contacts: create or update by the email identifier. Returns (created, seq, record bytes).

        Without an email identifier the first phone identifier is the key. Identifiers that belong to
        another contact are silently ignored.
        """
        idents = body.get("identifiers") or []
        if not idents:
            raise ProblemError.invalid(
                [
                    {
                        "field": "identifiers",
                        "code": "required",
                        "message": "At least one identifier (email or phone) is required",
                    }
                ]
            )
        key = next((i for i in idents if i["type"] == "email"), idents[0])
        index = self.by_email if key["type"] == "email" else self.by_phone
        seq = index.get(key["id"])
        if seq is None:
            seq = len(self.records)
            ms = now_ms()
            rec: dict[str, Any] = {"c": ms, "u": ms}
            old_tags: list[str] = []
            created = True
        else:
            rec = self.record(seq)
            old_tags = list(rec.get("tags", ()))
            created = False
        kept = []
        for ident in idents:
            owner = (self.by_email if ident["type"] == "email" else self.by_phone).get(ident["id"])
            if owner is None or owner == seq:
                kept.append(ident)
        self._apply(seq, rec, body, kept)
        return created, seq, self._save(seq, rec, old_tags)

    def patch(self, seq: int, body: dict[str, Any]) -> bytes:
        """PATCH /contacts/{id} or ?email=: update one contact; 409 if an identifier belongs to another."""
        rec = self.record(seq)
        idents = body.get("identifiers") or []
        for i, ident in enumerate(idents):
            owner = (self.by_email if ident["type"] == "email" else self.by_phone).get(ident["id"])
            if owner is not None and owner != seq:
                raise ProblemError.of(
                    409,
                    f"Contact identifier already exists: identifiers.{i}.id",
                    slug="identifier-exists",
                    title="Contact identifier already exists",
                )
        new_email = next((i["id"] for i in idents if i["type"] == "email"), None)
        if new_email is not None:  # a contact has one email: a different one replaces it
            for ident in rec.get("ids", ()):
                if ident["t"] == "email" and ident["v"] != new_email:
                    self.by_email.pop(ident["v"], None)
            rec["ids"] = [x for x in rec.get("ids", ()) if x["t"] != "email" or x["v"] == new_email]
        old_tags = list(rec.get("tags", ()))
        self._apply(seq, rec, body, idents)
        return self._save(seq, rec, old_tags)

    def _apply(
        self, seq: int, rec: dict[str, Any], body: dict[str, Any], idents: list[dict[str, Any]]
    ) -> None:
        ms = now_ms()
        now = fmt_ms(ms)
        rec["u"] = ms
        stored = rec.setdefault("ids", [])
        last_welcome = None
        for ident in idents:
            kind, value = ident["type"], ident["id"]
            target = next((x for x in stored if x["t"] == kind and x["v"] == value), None)
            welcome = ident.get("sendWelcomeMessage")
            if target is None:
                target = {"t": kind, "v": value, "ch": {}}
                stored.append(target)
                (self.by_email if kind == "email" else self.by_phone)[value] = seq
                if welcome is None or welcome is True:
                    self.welcome_messages += 1
                if not ident.get("channels"):
                    target["ch"][DEFAULT_CHANNEL[kind]] = ["nonSubscribed", now]
            target["w"] = welcome
            if welcome is not None and last_welcome is None:
                last_welcome = welcome
            if "source" in ident:
                target["src"] = ident["source"]
            for name, ch in (ident.get("channels") or {}).items():
                old = target["ch"].get(name)
                status, changed = ch["status"], ch.get("statusChangedAt")
                if old is None or old[0] != status or changed:
                    target["ch"][name] = [status, changed or now]
                    if status == "subscribed" and (old is None or old[0] != "subscribed"):
                        opt = rec.setdefault("opt", [])
                        opt.append([name, changed or now])
                        del opt[:-MAX_HISTORY]
            consent = ident.get("consent")
            if consent is not None:
                cons = rec.setdefault("cons", [])
                cons.append(
                    [
                        DEFAULT_CHANNEL[kind],
                        consent.get("createdAt") or now,
                        consent.get("ip"),
                        consent.get("source"),
                        consent.get("userAgent"),
                    ]
                )
                del cons[:-MAX_HISTORY]
        rec["w"] = last_welcome
        profile = rec.setdefault("p", {})
        for field in PROFILE_FIELDS:
            if field in body:
                profile[field] = body[field]
        if "country" in body and "countryCode" not in body:
            code = country_code_for(body["country"])
            if code:
                profile["countryCode"] = code
        if not profile:
            del rec["p"]
        custom = body.get("customProperties")
        if custom or "createdAt" in body:
            cp = rec.setdefault("cp", {})
            if custom:
                cp.update(custom)
            if "createdAt" in body:
                cp["externalCreated"] = body["createdAt"]
        tags = body.get("tags")
        if tags:
            have = rec.setdefault("tags", [])
            seen = set(have)
            for tag in tags:
                if tag not in seen:
                    seen.add(tag)
                    have.append(tag)

    def change_tags(self, add: bool, tags: Sequence[str], seqs: Iterable[int]) -> int:
        """Add or remove tags on the given contacts; returns how many (contact, tag) pairs changed."""
        changed = 0
        for seq in seqs:
            rec = self.record(seq)
            have = rec.get("tags", [])
            if add:
                seen = set(have)
                new = have + [t for t in dict.fromkeys(tags) if t not in seen]
            else:
                drop = set(tags)
                new = [t for t in have if t not in drop]
            if len(new) == len(have) and new == have:
                continue
            changed += abs(len(new) - len(have))
            rec["tags"] = new
            if not new:
                del rec["tags"]
            rec["u"] = now_ms()
            self._save(seq, rec, have)
        self.tag_changes += changed
        return changed

    def select(
        self, contact_ids: Iterable[str] = (), emails: Iterable[str] = (), phones: Iterable[str] = ()
    ) -> list[int]:
        """Union of the contacts the selectors match (unknown ones are ignored), each once."""
        seqs: dict[int, None] = {}
        for cid in contact_ids:
            seq = self.seq_of(cid)
            if seq is not None:
                seqs[seq] = None
        for email in emails:
            seq = self.by_email.get(email)
            if seq is not None:
                seqs[seq] = None
        for phone in phones:
            seq = self.by_phone.get(phone)
            if seq is not None:
                seqs[seq] = None
        return list(seqs)

    # ---------------------------------------------------------------- listing

    def _sorted(self, cache_key: Any, version: Any, build: Callable[[], list]) -> list:
        hit = self._sorted_cache.get(cache_key)
        if hit is not None and hit[0] == version:
            self._sorted_cache.move_to_end(cache_key)
            return hit[1]
        keys = build()
        self._sorted_cache[cache_key] = (version, keys)
        while len(self._sorted_cache) > 8:
            self._sorted_cache.popitem(last=False)
        return keys

    def list_contacts(
        self,
        *,
        limit: int,
        sort: str = "createdAt",
        direction: str = "desc",
        after: Any = None,
        before: Any = None,
        email: str | None = None,
        phone: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        updated_from_ms: int | None = None,
        segment_id: str | None = None,
    ) -> tuple[list[int], bool, Any, Any]:
        """One page: (seqs, hasMore, after key, before key). Keys are sort keys, ready for encode_cursor.

        ``hasMore`` tells whether more contacts follow in the direction of travel (forward, or backward
        when ``before`` was given).
        """
        if segment_id is not None:  # segments are not emulated: no segment has members
            return [], False, None, None
        preds: list[Callable[[int], bool]] = []
        base: Sequence[int] | None
        base_tag = False
        if email is not None:
            seq = self.by_email.get(email)
            base = [seq] if seq is not None else []
            if phone is not None:
                preds.append(lambda s: self.by_phone.get(phone) == s)
        elif phone is not None:
            seq = self.by_phone.get(phone)
            base = [seq] if seq is not None else []
        elif tag is not None:
            base_tag = True
            base = self._sorted(
                ("tag", tag),
                (self.prefix, self.tag_version.get(tag, 0)),
                lambda: sorted(self.tag_index.get(tag, ())),
            )
        else:
            base = None
        if tag is not None and not base_tag:
            preds.append(lambda s: s in self.tag_index.get(tag, ()))
        if status is not None:
            code = STATUS_CODES[status]
            preds.append(lambda s: self.email_status[s] == code)
        if updated_from_ms is not None:
            preds.append(lambda s: self.updated_ms[s] >= updated_from_ms)

        keys: Sequence[Any]
        if sort == "createdAt":
            keys = base if base is not None else range(len(self.records))

            def seq_of_key(k: Any) -> int:
                return k
        else:
            upd = self.updated_ms
            if base is None or base_tag:
                version = (self.prefix, self.version)
                keys = self._sorted(
                    ("updated", tag),
                    version,
                    lambda: sorted(
                        zip(
                            (upd[s] for s in (base if base is not None else range(len(self.records)))),
                            base if base is not None else range(len(self.records)),
                            strict=True,
                        )
                    ),
                )
            else:
                keys = sorted((upd[s], s) for s in base)

            def seq_of_key(k: Any) -> int:
                return k[1]

        n = len(keys)
        asc = direction == "asc"
        backward = before is not None
        if backward:
            idx: Iterator[int] | range
            idx = (
                range(bisect_left(keys, before) - 1, -1, -1) if asc else range(bisect_right(keys, before), n)
            )
        elif after is not None:
            idx = range(bisect_right(keys, after), n) if asc else range(bisect_left(keys, after) - 1, -1, -1)
        else:
            idx = range(n) if asc else range(n - 1, -1, -1)

        page_keys: list[Any] = []
        more = False
        for i in idx:
            k = keys[i]
            s = seq_of_key(k)
            if preds and not all(p(s) for p in preds):
                continue
            if len(page_keys) == limit:
                more = True
                break
            page_keys.append(k)
        if backward:
            page_keys.reverse()
        if not page_keys:
            return [], False, None, None
        if backward:
            after_key, before_key = page_keys[-1], (page_keys[0] if more else None)
        else:
            after_key = page_keys[-1] if more else None
            before_key = page_keys[0] if after is not None else None
        return [seq_of_key(k) for k in page_keys], more, after_key, before_key
