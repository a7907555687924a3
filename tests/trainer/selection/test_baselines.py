"""Per-image quotas, PixelPick and image-wise selection on small hand-computed tensors."""

from __future__ import annotations

import torch

from trainer.selection.baselines import (
    image_quotas,
    image_wise_select,
    margin_uncertainty,
    pixelpick_select,
)


def test_image_quotas_spread_the_rest_over_image_visits() -> None:
    assert image_quotas(10, 2, 2).tolist() == [3, 3]  # ceil(10 / 4)
    assert image_quotas(5, 1, 2).tolist() == [3, 2]  # the batch takes exactly the rest
    assert image_quotas(1, 5, 3).tolist() == [1, 0, 0]
    assert image_quotas(0, 5, 2).tolist() == [0, 0]
    assert image_quotas(-4, 5, 2).tolist() == [0, 0]


def test_margin_uncertainty_flips_the_top_two_margin() -> None:
    prob = torch.tensor([0.7, 0.2, 0.1]).view(1, 3, 1, 1)
    assert torch.allclose(margin_uncertainty(prob), torch.tensor([[[0.5]]]))


def test_pixelpick_draws_only_from_the_top_share() -> None:
    unc = torch.arange(100.0).view(1, 10, 10)
    unasked = torch.ones(1, 10, 10, dtype=torch.bool)
    unasked[0, 9, 9] = False  # the most uncertain pixel was asked before
    seen = torch.zeros(1, 10, 10, dtype=torch.bool)
    for seed in range(20):
        got = pixelpick_select(
            unc, unasked, torch.tensor([4]), 0.1, torch.Generator().manual_seed(seed)
        )
        assert int(got.sum()) == 4
        assert not (got & ~unasked).any()
        seen |= got
    # candidates: the 10 most uncertain unasked pixels (values 89..98), each drawn at times
    assert set(unc[seen].tolist()) == set(range(89, 99))


def test_pixelpick_never_has_fewer_candidates_than_its_quota() -> None:
    unc = torch.arange(100.0).view(1, 10, 10)
    got = pixelpick_select(unc, torch.ones(1, 10, 10, dtype=torch.bool), torch.tensor([30]), 0.1)
    assert set(unc[got].tolist()) == set(range(70, 100))


def test_image_wise_takes_whole_images_and_stops_exactly_at_the_budget() -> None:
    unasked = torch.ones(3, 2, 2, dtype=torch.bool)
    got = image_wise_select(unasked, 0, 10, 1.0, torch.Generator().manual_seed(0))
    assert got.sum((1, 2)).tolist() == [4, 4, 2]  # the third image gets the last 2 pixels
    # half the window elapsed: whole images while behind 5 pixels, then it waits
    assert image_wise_select(unasked, 0, 10, 0.5).sum((1, 2)).tolist() == [4, 4, 0]
    assert image_wise_select(unasked, 6, 10, 0.5).sum().item() == 0  # ahead of the pace
    # an image with no unasked pixel costs nothing and is passed over
    unasked[0] = False
    assert image_wise_select(unasked, 8, 10, 1.0).sum((1, 2)).tolist() == [0, 2, 0]


def test_margin_uncertainty_is_the_topk_margin_ties_included() -> None:
    gen = torch.Generator().manual_seed(0)
    prob = torch.randn(2, 19, 8, 9, generator=gen).mul(3).softmax(1)
    prob[0, :, 0, 0] = 1 / 19  # every class tied
    prob[1, 3:5, 2, 2] = 0.5  # two tied at the top
    prob[1, :3, 2, 2] = prob[1, 5:, 2, 2] = 0.0
    top2 = prob.topk(2, dim=1).values
    assert torch.equal(margin_uncertainty(prob), 1.0 - (top2[:, 0] - top2[:, 1]))
    assert margin_uncertainty(prob)[1, 2, 2] == 1.0
