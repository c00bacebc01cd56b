"""Version ids by hand: sortable by time, and always after the current one."""

from __future__ import annotations

from thresher.pipeline.versions import new_id


def test_version_ids_sort_after_the_previous_one_even_in_the_same_millisecond():
    first = new_id()
    later = [new_id(first) for _ in range(50)]
    assert all(v > first for v in later)
    assert new_id("99991231T235959999Z-ffffff") > "99991231T235959999Z-ffffff"  # a clock set back
