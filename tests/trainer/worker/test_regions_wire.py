"""A superpixel's mask as the wire's Region and back (issue 24's contract)."""

import pytest
import torch

from server.schemas import QueryIn
from trainer.worker.regions import decode_region, encode_region, first_pixel


def test_the_schema_example_by_hand() -> None:
    mask = torch.zeros(8, 12, dtype=torch.bool)
    mask[4, 8:10] = True  # row 011 of the 2 x 3 box at (4, 7)
    mask[5, 7:9] = True  # row 110
    region = encode_region(mask)
    assert region.model_dump() == {"top": 4, "left": 7, "height": 2, "width": 3, "runs": [1, 4, 1]}
    assert torch.equal(decode_region(region, 8, 12), mask)
    assert first_pixel(region) == (4, 8)
    QueryIn.model_validate(  # a query on the region's first pixel passes the contract
        {"image_id": 1, "y": 4, "x": 8, "group": "random", "region": region.model_dump()}
    )


def test_a_box_starting_inside_opens_with_an_empty_outside_run() -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:3] = True
    region = encode_region(mask)
    assert region.runs == [0, 4] and region.pixels == 4


def test_superpixels_round_trip() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randint(0, 5, (6, 10), generator=gen)
    for r in range(5):
        mask = maps == r
        assert torch.equal(decode_region(encode_region(mask), 6, 10), mask)
    with pytest.raises(ValueError, match="empty"):
        encode_region(torch.zeros(3, 3, dtype=torch.bool))
