"""Micro-benchmark of the contrast (+DCCM) and seg-loss parts of one ADA-MCU step at 512x1024.

    nice .venv/bin/python scripts/contrast_microbench.py [--old PATH] [--reps N]

Builds what ``step._contrast`` / ``step._segmentation_loss`` see for 2 source + 2 target
images of 512x1024 (random logits (4,19,64,128) upsampled, embeddings (4,64,64,128), blocky
labels, ~2% of the target pixels labeled) and times forward+backward of each part alone,
1 thread. ``--old`` points at a folder holding a copy of a pre-move package (``engine.py``,
``adapt.py``) renamed ``trainer_old`` (imports rewritten), so old and new run interleaved in
one process.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def _sibling(eng, name: str):
    """Module ``name`` of the package of ``eng`` (``trainer.loop.step`` now, or an old copy's
    ``trainer_old.engine``); the training loop was ``adapt``, it is ``train`` since the move."""
    package = eng.__name__.rsplit(".", 1)[0]
    if name == "adapt" and package == "trainer":
        name = "train"
    return importlib.import_module(f"{package}.{name}")


def _inputs(eng, H=512, W=1024, C=19, D=64, seed=0):
    cfgmod, strat, adapt = (_sibling(eng, n) for n in ("config", "strategies", "adapt"))
    lb, model, unc = (_sibling(eng, n) for n in ("labelbank", "model", "uncertainty"))
    g = torch.Generator().manual_seed(seed)
    cfg = strat.configure(cfgmod.TrainConfig(embed_dim=D), "full", budget_rate=0.05)
    logits = torch.randn(4, C, H // 8, W // 8, generator=g) * 3
    aux = logits + torch.randn(4, C, H // 8, W // 8, generator=g)
    emb = torch.randn(4, D, H // 8, W // 8, generator=g)
    coarse = torch.randint(C, (4, 1, H // 8, W // 8), generator=g)
    blocky = F.interpolate(coarse.float(), size=(H, W)).long()[:, 0]
    sy = blocky[:2].clone()
    sy[:, :16] = 255
    ty = blocky[2:].to(torch.uint8)
    bank = lb.LabelBank(2, H, W)
    q = torch.rand(2, H, W, generator=g) < 0.02
    idx, ys, xs = q.nonzero(as_tuple=True)
    half = idx.numel() // 2
    for part, grp in ((slice(None, half), "high"), (slice(half, None), "medium")):
        i, y, x = idx[part], ys[part], xs[part]
        bank.merge(i, y, x, ty[i, y, x].long(), grp)
    batch = eng.Batch(torch.zeros(2, 3, 1, 1), sy, torch.zeros(2, 3, 1, 1), torch.arange(2))
    batch.source_x = torch.zeros(2, 3, H, W)  # shape only (size, n_src)
    main = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
    score = unc.uncertainty_score(
        main, F.interpolate(aux, size=(H, W), mode="bilinear", align_corners=False)
    )
    state = adapt.new_loop_state(cfg, int(0.05 * H * W * 2), C, 2)
    eng.calibrate_thresholds(state, score[2:], cfg)
    groups = unc.partition(score, state.sampler.state.pi_high, state.sampler.state.pi_low)
    pred = main.max(1).indices
    return cfg, logits, aux, emb, model.SegOutput, batch, bank, state, groups, pred


def _one(eng, inp, part, seed):
    cfg, logits, aux, emb, SegOutput, batch, bank, state, groups, pred = inp
    H, W = batch.source_x.shape[-2:]
    lg = logits.clone().requires_grad_()
    e = emb.clone().requires_grad_()
    # a leaf: the upsample's backward is shared by the whole step, not part of these pieces
    main = F.interpolate(lg, size=(H, W), mode="bilinear", align_corners=False)
    main = main.detach().requires_grad_()
    out = SegOutput(lg, aux.clone().requires_grad_(), e)
    gen = torch.Generator().manual_seed(seed)
    stats = eng.StepStats()
    t = time.perf_counter()
    if part == "target_loss":  # the target part of seg_loss alone: AS draw + Eq. 4-5
        labels, label_group, _ = bank.batch(batch.target_index)
        masks = eng.target_masks(cfg, groups[2:], labels, label_group, gen)
        loss = eng.grouped_loss(main[2:], labels, pred[2:], masks)[0]
    elif part == "seg_loss":
        aux_up = F.interpolate(out.aux, size=(H, W), mode="bilinear", align_corners=False)
        loss = eng._segmentation_loss(
            cfg, main, aux_up, pred, batch, bank, groups[2:], 2, gen, stats
        )
    else:
        loss = eng._contrast(cfg, out, main, pred, batch, bank, groups, state, gen, stats)
    loss.backward()
    return time.perf_counter() - t


PARTS = ("seg_loss", "target_loss", "contrast")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default="")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    engines = {"new": importlib.import_module("trainer.loop.step")}
    if args.old:
        sys.path.insert(0, args.old)
        engines["old"] = importlib.import_module("trainer_old.engine")
    inputs = {k: _inputs(e) for k, e in engines.items()}
    times = {(k, p): [] for k in engines for p in PARTS}
    for rep in range(args.reps + 1):  # first round is warm-up
        for part in PARTS:
            for k in list(engines) if rep % 2 else list(engines)[::-1]:
                dt = _one(engines[k], inputs[k], part, rep)
                if rep:
                    times[(k, part)].append(dt)
    for (k, p), v in sorted(times.items()):
        print(
            f"{k:4s} {p:9s} median {statistics.median(v) * 1e3:8.1f} ms  "
            f"min {min(v) * 1e3:8.1f} ms  (n={len(v)})"
        )


if __name__ == "__main__":
    main()
