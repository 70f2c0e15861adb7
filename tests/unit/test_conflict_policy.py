"""The conflict policy picks the same winner from the same leaves, in any order."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from mydrive.metadata.conflicts import Leaf, pick_winner, rev_key

revs = st.builds(lambda g, h: f"{g}-{h}", st.integers(1, 50),
                 st.text("0123456789abcdef", min_size=1, max_size=32))
bodies = st.one_of(st.fixed_dictionaries({"updated_ms": st.integers(0, 10**13)}),
                   st.fixed_dictionaries({"updated_ms": st.one_of(st.text(max_size=3),
                                                                 st.none(), st.booleans())}),
                   st.just({}))
leaf_lists = st.lists(st.builds(Leaf, rev=revs, body=bodies), min_size=1, max_size=8,
                      unique_by=lambda leaf: leaf.rev)


def test_conflicts_latest_update_wins() -> None:
    """The leaf with the highest updated_ms wins whatever its revision."""
    old = Leaf("9-ffff", {"updated_ms": 100})
    new = Leaf("2-0000", {"updated_ms": 200})
    assert pick_winner("user:a", [old, new]) is new


def test_conflicts_tie_broken_by_revision() -> None:
    """Equal updated_ms: the higher generation, then the higher hash wins."""
    a, b, c = Leaf("3-aa", {"updated_ms": 5}), Leaf("3-bb", {"updated_ms": 5}), Leaf("2-ff", {})
    assert pick_winner("user:a", [a, b, c]) is b
    assert pick_winner("user:a", [Leaf("2-ff", {}), Leaf("10-00", {})]).rev == "10-00"


def test_conflicts_malformed_updated_ms_counts_as_zero() -> None:
    """A replica's garbage updated_ms never beats a real one and never raises."""
    good = Leaf("1-00", {"updated_ms": 1})
    for junk in ("9999999999999", True, -5, None, 1.5e30, [1]):
        assert pick_winner("user:a", [Leaf("9-ff", {"updated_ms": junk}), good]) is good


@given(leaf_lists, st.randoms(use_true_random=False))
def test_conflicts_winner_independent_of_order(leaves: list[Leaf], rnd: random.Random) -> None:
    """Every replica, seeing the leaves in any order, picks the same one."""
    shuffled = list(leaves)
    rnd.shuffle(shuffled)
    assert pick_winner("file:x", leaves).rev == pick_winner("file:x", shuffled).rev


def test_conflicts_rev_key_parses_generation() -> None:
    """Revision '12-abc' sorts after '9-fff' (numeric generation, not text)."""
    assert rev_key("12-abc") > rev_key("9-fff")
    assert rev_key("junk") < rev_key("1-0")
