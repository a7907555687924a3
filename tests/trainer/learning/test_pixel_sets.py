"""The MCU pixel sets of one forward pass: caps, anchor rules, the batched embedding gather."""

import torch
import torch.nn.functional as F

from trainer.config import TrainConfig
from trainer.constants import IGNORE_INDEX
from trainer.learning.pixel_sets import PixelSetInputs, build_pixel_sets, gather_batch_embeddings
from trainer.nets.output import SegOutput

H, W, C = 32, 48, 5


def _gather_one_image(
    emb: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Per image, the reference: embeddings (P,D) of one map emb (D,h,w) at full-res pixels."""
    image = torch.zeros_like(ys)
    return F.normalize(gather_batch_embeddings(emb[None], image, ys, xs, size), dim=1)


def test_batched_gather_matches_per_image_grid_sample() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(3, 8, 8, 12, generator=g), dim=1)
    image = torch.randint(0, 3, (400,), generator=g).sort().values
    ys, xs = torch.randint(0, H, (400,), generator=g), torch.randint(0, W, (400,), generator=g)
    got = torch.nn.functional.normalize(gather_batch_embeddings(emb, image, ys, xs, (H, W)), dim=1)
    want = torch.cat(
        [_gather_one_image(emb[i], ys[image == i], xs[image == i], (H, W)) for i in range(3)]
    )
    assert torch.allclose(got, want, atol=1e-5)


def test_build_pixel_sets_respects_caps_and_anchor_rules() -> None:
    g = torch.Generator().manual_seed(1)
    cfg = TrainConfig(max_anchors_per_class=3, max_samples_per_class=5)
    src_y = torch.randint(C, (2, H, W), generator=g)
    src_y[:, :4] = IGNORE_INDEX
    tgt_y = torch.full((2, H, W), IGNORE_INDEX)
    tgt_y[:, ::4, ::4] = torch.randint(C, (2, H // 4, W // 4), generator=g)
    tgt_y[0][tgt_y[0] == C - 1] = IGNORE_INDEX  # the last class: pseudo labels only, image 2
    pred = torch.randint(C, (4, H, W), generator=g)
    pred[0] = torch.where(src_y[0] == 0, 0, pred[0])  # class 0 of source image 0: all right
    pred[2] = torch.where(tgt_y[0] == 1, 1, pred[2])  # class 1 of target image 0: all right
    low = torch.rand(2, H, W, generator=g) < 0.3
    src_low = torch.rand(2, H, W, generator=g) < 0.3
    low[1] = False  # target image 1 (batch image 3): no G_l, so no centre pixel
    src_low[0], src_low[1] = True, False  # source: image 0 all G_l, image 1 none
    out = SegOutput(
        torch.zeros(4, C, 8, 12),
        torch.zeros(4, C, 8, 12),
        torch.nn.functional.normalize(torch.randn(4, 16, 8, 12, generator=g), dim=1),
    )
    inputs = PixelSetInputs(out, 2, src_y, tgt_y, pred[2:], low, src_low, pred, (H, W), C)
    pix = build_pixel_sets(inputs, cfg, torch.Generator().manual_seed(0))
    assert pix.domains == [0, 0, 1, 1] and pix.emb.shape == (pix.label.numel(), 16)
    assert (pix.label != IGNORE_INDEX).all()
    # the inputs' labels (target: true, else the pseudo label in G_l) and misclassified pixels
    labeled = tgt_y != IGNORE_INDEX
    label = torch.cat([src_y, torch.where(low & ~labeled, pred[2:], tgt_y)])
    wrong = torch.cat([src_y != IGNORE_INDEX, labeled]) & (pred != label)
    binding = 0
    for i in range(4):
        on = pix.image == i
        for c in range(C):
            cls = on & (pix.label == c)
            n_wrong = int((wrong[i] & (label[i] == c)).sum())
            n_pick = int((label[i] == c).sum())
            anchors = min(cfg.max_anchors_per_class, n_wrong)
            binding += n_wrong > cfg.max_anchors_per_class
            # exactly the cap's anchors (not fewer), and the capped candidates plus them
            assert int((cls & pix.anchor).sum()) == anchors, (i, c)
            samples = min(2 * cfg.max_samples_per_class, n_pick)
            assert samples <= int(cls.sum()) <= samples + anchors, (i, c)
    assert binding >= 2 * C - 1  # the anchor cap binds almost everywhere on the source
    assert not (pix.anchor & (pix.image == 0) & (pix.label == 0)).any()  # right: no anchor
    assert not (pix.anchor & (pix.image == 2) & (pix.label == 1)).any()
    # centre pixels (III-C1) are the G_l ones: every pick of source image 0, none of source
    # image 1 or target image 3 (no G_l there); in target image 2 the pseudo-labelled
    # picks of the class with no true label in that image are all centres (all in G_l)
    assert pix.center[pix.image == 0].all()
    assert not pix.center[(pix.image == 1) | (pix.image == 3)].any()
    pseudo_only = [c for c in range(C) if not ((tgt_y[0] == c).any())]
    on2 = (pix.image == 2) & torch.isin(pix.label, torch.tensor(pseudo_only))
    assert pseudo_only and on2.any() and pix.center[on2].all()
    assert not pix.center[pix.image == 2].all()  # its true-labelled picks are not in G_l


def test_build_pixel_sets_takes_every_candidate_when_caps_do_not_bind() -> None:
    g = torch.Generator().manual_seed(2)
    cfg = TrainConfig(max_anchors_per_class=10_000, max_samples_per_class=10_000)
    src_y = torch.randint(C, (2, H, W), generator=g)
    src_y[:, :3] = IGNORE_INDEX
    tgt_y = torch.full((2, H, W), IGNORE_INDEX)
    tgt_y[:, ::3, ::5] = torch.randint(C, tgt_y[:, ::3, ::5].shape, generator=g)
    pred = torch.randint(C, (4, H, W), generator=g)
    low = torch.rand(2, H, W, generator=g) < 0.3
    src_low = torch.rand(2, H, W, generator=g) < 0.3
    low[1] = False  # target image 1 (batch image 3): no G_l, so no centre pixel
    src_low[0], src_low[1] = True, False  # source: image 0 all G_l, image 1 none
    out = SegOutput(
        torch.zeros(4, C, 8, 12), torch.zeros(4, C, 8, 12), torch.randn(4, 16, 8, 12, generator=g)
    )
    inputs = PixelSetInputs(out, 2, src_y, tgt_y, pred[2:], low, src_low, pred, (H, W), C)
    pix = build_pixel_sets(inputs, cfg, torch.Generator().manual_seed(0))
    labeled = tgt_y != IGNORE_INDEX
    label = torch.cat(
        [src_y, torch.where(labeled, tgt_y, torch.where(low, pred[2:], IGNORE_INDEX))]
    )
    valid = torch.cat([src_y != IGNORE_INDEX, labeled])
    assert pix.label.numel() == int((label != IGNORE_INDEX).sum())
    assert torch.equal(pix.label, label.flatten()[label.flatten() != IGNORE_INDEX])
    wrong = (valid & (pred != label)).flatten()[label.flatten() != IGNORE_INDEX]
    assert torch.equal(pix.anchor, wrong)
    center = torch.cat([src_low & (src_y != IGNORE_INDEX), low & ~labeled]).flatten()
    assert torch.equal(pix.center, center[label.flatten() != IGNORE_INDEX])
