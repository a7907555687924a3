"""Tests for trainer/data/fda.py: Fourier amplitude swap."""

from __future__ import annotations

import pytest
import torch

from trainer.data.fda import fda_source_to_target, low_freq_mask


def _pair(h: int = 16, w: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64)
    trg = torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64) * 2 + 1
    return src, trg


def test_beta_zero_is_identity() -> None:
    src, trg = _pair()
    assert torch.allclose(fda_source_to_target(src, trg, beta=0.0), src)


def test_mask_is_centred_and_symmetric() -> None:
    mask = low_freq_mask(16, 24, 0.125)  # b = 2: |k| <= 1
    assert mask.sum() == 9
    assert mask[0, 0] and mask[1, 1] and mask[-1, -1] and not mask[2, 0]
    assert torch.equal(mask, torch.roll(mask.flip(0, 1), (1, 1), (0, 1)))  # k -> -k


def test_low_frequency_amplitude_from_target_phase_from_source() -> None:
    src, trg = _pair()
    out = fda_source_to_target(src, trg, beta=0.2)
    assert out.shape == src.shape and out.dtype == src.dtype
    f_out, f_src, f_trg = (torch.fft.fft2(t) for t in (out, src, trg))
    mask = low_freq_mask(16, 24, 0.2)
    assert torch.allclose(f_out.abs()[..., mask], f_trg.abs()[..., mask], atol=1e-9)
    assert torch.allclose(f_out.abs()[..., ~mask], f_src.abs()[..., ~mask], atol=1e-9)
    unit = lambda f: f / f.abs().clamp_min(1e-12)  # noqa: E731
    assert torch.allclose(unit(f_out), unit(f_src), atol=1e-7)
    # the DC term carries the mean: the output takes the target's per-channel mean
    assert torch.allclose(out.mean((-2, -1)), trg.mean((-2, -1)), atol=1e-9)


def test_float32_and_size_check() -> None:
    src, trg = _pair()
    out = fda_source_to_target(src.float(), trg.float(), beta=0.1)
    assert out.dtype == torch.float32  # and the float64 swap, to float32's precision
    assert torch.allclose(out.double(), fda_source_to_target(src, trg, beta=0.1), atol=1e-5)
    with pytest.raises(ValueError):
        fda_source_to_target(src, trg[..., :8], beta=0.1)
