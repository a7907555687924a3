"""server/schemas.py ``Region``: the one wire encoding of a region query, on hand-made masks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.schemas import MAX_REGION_PIXELS, QueryIn, Region

# a 2 x 3 box at (4, 7): rows "011" and "110" -> runs out 1, in 4 (0,1 0,2 1,0 1,1), out 1
DOC = {"top": 4, "left": 7, "height": 2, "width": 3, "runs": [1, 4, 1]}


def test_the_docstring_example_decodes_to_its_mask() -> None:
    region = Region(**DOC)
    assert region.pixels == 4
    assert region.spans() == [(1, 4)]
    assert region.cells() == [(4, 8), (4, 9), (5, 7), (5, 8)]
    assert [region.contains(y, x) for y, x in [(4, 7), (4, 8), (5, 8), (5, 9), (3, 8)]] == [
        False,
        True,
        True,
        False,
        False,
    ]


def test_a_region_starting_inside_has_a_zero_outside_run() -> None:
    # 1 x 4 box "1101": out 0, in 2, out 1, in 1
    region = Region(top=0, left=0, height=1, width=4, runs=[0, 2, 1, 1])
    assert region.cells() == [(0, 0), (0, 1), (0, 3)]
    assert region.pixels == 3


@pytest.mark.parametrize(
    ("runs", "why"),
    [
        ([1, 4], "cover 5 pixels"),  # the box holds 6
        ([1, 4, 2], "cover 7 pixels"),
        ([6, 0], "at least one pixel"),
    ],
)
def test_runs_that_do_not_fit_the_box_are_refused(runs: list[int], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        Region(**{**DOC, "runs": runs})


def test_a_box_larger_than_the_limit_is_refused() -> None:
    side = 1 << 11  # 2048 x 1024 > MAX_REGION_PIXELS
    with pytest.raises(ValidationError, match=str(MAX_REGION_PIXELS)):
        Region(top=0, left=0, height=side, width=side // 2, runs=[0, side * side // 2])


def test_a_query_pixel_must_lie_inside_its_region() -> None:
    ok = QueryIn(image_id=1, y=5, x=8, region=DOC)
    assert ok.region is not None and ok.region.pixels == 4
    with pytest.raises(ValidationError, match=r"\(5, 9\) is not inside"):
        QueryIn(image_id=1, y=5, x=9, region=DOC)
    assert QueryIn(image_id=1, y=5, x=9).region is None  # a pixel query as before
