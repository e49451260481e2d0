"""Contact semantics, list paging and the rate limiter of the emulator, in-process."""

from __future__ import annotations

import pytest

from airflow_provider_omnisend.testing.emulator.problems import ProblemError
from airflow_provider_omnisend.testing.emulator.ratelimit import SlidingWindowLimiter, retry_after_seconds
from airflow_provider_omnisend.testing.emulator.store import ContactStore, decode_cursor, encode_cursor


def contact(email=None, phone=None, **fields):
    idents = []
    if email:
        idents.append({"type": "email", "id": email, **fields.pop("email_extra", {})})
    if phone:
        idents.append({"type": "phone", "id": phone})
    return {"identifiers": idents, **fields}


def test_upsert_merge_semantics():
    s = ContactStore()
    created, seq, _ = s.upsert(
        contact(
            "a@example.com",
            firstName="A",
            tags=["x"],
            customProperties={"k": 1},
            email_extra={"channels": {"email": {"status": "subscribed"}}, "sendWelcomeMessage": False},
        )
    )
    assert created and seq == 0
    created, seq2, _ = s.upsert(
        contact(
            "a@example.com",
            lastName="B",
            tags=["y", "x"],
            customProperties={"j": 2},
            createdAt="2020-01-01T00:00:00Z",
        )
    )
    assert not created and seq2 == 0
    view = s.render(0, emulator=True)
    assert (view["firstName"], view["lastName"]) == ("A", "B")
    assert view["tags"] == ["x", "y"]
    assert view["status"] == "subscribed"  # not sent the second time: kept
    assert view["customProperties"] == {"k": 1, "j": 2, "externalCreated": "2020-01-01T00:00:00Z"}
    assert view["identifiers"][0]["sendWelcomeMessage"] is None  # the last request did not send it
    assert s.welcome_messages == 0
    assert s.contact_id(0) == view["id"] and s.seq_of(view["id"]) == 0


def test_new_contact_status_and_welcome_default():
    s = ContactStore()
    s.upsert(contact("b@example.com"))
    view = s.render(0)
    assert view["status"] == "nonSubscribed"
    assert s.welcome_messages == 1  # sendWelcomeMessage absent = true
    s.upsert(contact("b@example.com", phone="+37060000002"))  # a new identifier on an existing contact
    assert s.welcome_messages == 2
    assert s.render(0)["phone"] == ["+37060000002"]


def test_identifier_of_another_contact_is_ignored_on_post_and_409_on_patch():
    s = ContactStore()
    s.upsert(contact("a@example.com", phone="+37060000001"))
    created, seq, _ = s.upsert(contact("b@example.com", phone="+37060000001"))
    assert created and seq == 1
    assert "phone" not in s.render(1)
    with pytest.raises(ProblemError) as err:
        s.patch(1, contact(phone="+37060000001"))
    assert err.value.status == 409
    s.patch(1, contact("c@example.com"))  # a different email replaces the old one
    assert s.render(1)["email"] == "c@example.com" and "b@example.com" not in s.by_email


def test_tags_add_remove():
    s = ContactStore()
    for i in range(3):
        s.upsert(contact(f"u{i}@example.com", tags=["keep"]))
    seqs = s.select(emails=["u0@example.com", "nobody@example.com"], contact_ids=[s.contact_id(1), "bogus"])
    assert sorted(seqs) == [0, 1]
    assert s.change_tags(True, ["seg", "seg2"], seqs) == 4
    assert s.tag_index["seg"] == {0, 1}
    assert s.change_tags(False, ["seg"], [0, 2]) == 1
    assert s.tag_index["seg"] == {1}
    assert s.render(0)["tags"] == ["keep", "seg2"]


@pytest.fixture
def store25():
    s = ContactStore()
    for i in range(25):
        s.upsert(
            contact(
                f"u{i:02d}@example.com",
                tags=["even" if i % 2 == 0 else "odd"],
                email_extra={
                    "channels": {"email": {"status": "subscribed" if i % 3 == 0 else "nonSubscribed"}}
                },
            )
        )
    return s


def _walk(s, **kw):
    seqs, after = [], None
    for _ in range(50):
        page, more, after_key, _ = s.list_contacts(limit=4, after=after, **kw)
        seqs += page
        if not more:
            return seqs
        after = after_key
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("sort", ["createdAt", "updatedAt"])
def test_paging_visits_every_contact_once(store25, direction, sort):
    expected = list(range(25)) if direction == "asc" else list(range(24, -1, -1))
    assert _walk(store25, direction=direction, sort=sort) == expected
    evens = [i for i in expected if i % 2 == 0]
    assert _walk(store25, direction=direction, sort=sort, tag="even") == evens
    subscribed = [i for i in expected if i % 3 == 0]
    assert _walk(store25, direction=direction, sort=sort, status="subscribed") == subscribed


def test_before_cursor_returns_previous_page(store25):
    first, more, after, before = store25.list_contacts(limit=5)
    assert first == [24, 23, 22, 21, 20] and more and before is None
    second, _, _, before2 = store25.list_contacts(limit=5, after=after)
    assert second == [19, 18, 17, 16, 15]
    back, more_back, _, before3 = store25.list_contacts(limit=5, before=before2)
    assert back == first and not more_back and before3 is None


def test_filters_email_and_segment(store25):
    assert store25.list_contacts(limit=10, email="u03@example.com")[0] == [3]
    assert store25.list_contacts(limit=10, email="u03@example.com", tag="even")[0] == []
    assert store25.list_contacts(limit=10, segment_id="abc")[0] == []


def test_cursor_round_trip_and_rejections():
    assert decode_cursor(encode_cursor("createdAt", 7), "createdAt") == 7
    assert decode_cursor(encode_cursor("updatedAt", [5, 7]), "updatedAt") == (5, 7)
    for bad in ("!!!", encode_cursor("updatedAt", [5, 7])):
        with pytest.raises(ValueError):
            decode_cursor(bad, "createdAt")


def test_sliding_window_limiter():
    lim = SlidingWindowLimiter()
    for t in range(5):
        assert lim.acquire("brand", "default", 5, 60.0, float(t)) is None
    wait = lim.acquire("brand", "default", 5, 60.0, 10.0)
    assert wait == pytest.approx(50.0)  # the first request (t=0) leaves the window at t=60
    assert retry_after_seconds(wait) == 50
    assert lim.acquire("other-brand", "default", 5, 60.0, 10.0) is None  # per brand
    assert lim.acquire("brand", "tags", 5, 60.0, 10.0) is None  # per bucket
    assert lim.acquire("brand", "default", 5, 60.0, 60.5) is None
    assert lim.max_in_window == {"default": 5, "tags": 1}
    assert retry_after_seconds(0.01) == 1
    assert lim.acquire("brand", "default", 0, 60.0, 61.0) is None  # 0 = no limit
