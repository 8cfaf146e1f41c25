"""``RecentDigests``: what a charger's snapshot remembers of the meter values and stops it
recorded, to drop re-sent copies (``tests/test_recent_digests.py``: where it is loaded from)."""

from __future__ import annotations

from csms.protocol.state import DIGEST_CHARS, RECENT_DIGESTS, RecentDigests


def digest(n: int) -> str:
    return f"{n:0{DIGEST_CHARS}x}"


def test_holds_what_was_added_and_nothing_else() -> None:
    recent = RecentDigests().add([digest(1), digest(2)])
    assert digest(1) in recent and digest(2) in recent
    assert digest(3) not in recent
    assert list(recent) == [digest(1), digest(2)] and len(recent) == 2


def test_a_match_across_two_entries_is_no_entry() -> None:
    first, second = "a" * DIGEST_CHARS, "b" * DIGEST_CHARS
    recent = RecentDigests().add([first, second])
    straddling = first[DIGEST_CHARS // 2 :] + second[: DIGEST_CHARS // 2]
    assert straddling in recent.text  # found in the text, but not on an entry's start
    assert straddling not in recent
    # A later entry equal to the straddling text is still found.
    assert straddling in recent.add([straddling])


def test_keeps_the_newest_and_drops_the_oldest() -> None:
    recent = RecentDigests().add([digest(n) for n in range(RECENT_DIGESTS)])
    assert len(recent) == RECENT_DIGESTS
    newer = recent.add([digest(1000), digest(1001)])
    assert len(newer) == RECENT_DIGESTS
    assert digest(0) not in newer and digest(1) not in newer
    assert digest(2) in newer and digest(1001) in newer
    assert list(newer)[-2:] == [digest(1000), digest(1001)]
    # More than it keeps in one go: the last RECENT_DIGESTS of them.
    flood = RecentDigests().add([digest(n) for n in range(RECENT_DIGESTS + 10)])
    assert list(flood) == [digest(n) for n in range(10, RECENT_DIGESTS + 10)]


def test_from_the_store_leaves_out_digests_of_another_width() -> None:
    recent = RecentDigests.of([digest(1), "abc", digest(2) + "ff"])
    assert list(recent) == [digest(1)]
    assert RecentDigests().add([]) == RecentDigests()
