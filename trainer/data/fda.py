"""Fourier Domain Adaptation (Yang & Soatto, CVPR 2020): a training-free image alignment.

The low-frequency band of a source image's amplitude spectrum is replaced by the target
image's; the source phase (edges, layout) is kept, so the source image takes on the
target's global colour, illumination and tone.

Band: frequencies ``|k_y| < b`` and ``|k_x| < b`` with ``b = floor(beta * min(H, W))``,
i.e. the centred square of the shifted spectrum. The original code swaps the asymmetric
range ``[-b, b - 1]``; a symmetric band keeps the spectrum Hermitian, so the output is real
without discarding an imaginary part and its low-frequency amplitude equals the target's
exactly. ``beta = 0`` is the identity; at 64x128 a useful ``beta`` is about 0.03-0.1
(``b >= 2``), at 512x1024 the paper's 0.01.

Works on any float images (raw [0, 255], [0, 1] or ImageNet-normalised); swapping the DC
term moves the per-channel mean to the target's in whatever space the input is in.
"""

from __future__ import annotations

import torch
from torch import Tensor


def low_freq_mask(
    height: int, width: int, beta: float, device: torch.device | None = None
) -> Tensor:
    """Bool (H, W) mask in unshifted ``fft2`` layout of frequencies ``|k| < beta*min(H, W)``."""
    b = int(beta * min(height, width))
    ky = torch.fft.fftfreq(height, 1.0 / height, device=device).abs()
    kx = torch.fft.fftfreq(width, 1.0 / width, device=device).abs()
    return (ky[:, None] < b) & (kx[None, :] < b)


def fda_source_to_target(src: Tensor, trg: Tensor, beta: float = 0.01) -> Tensor:
    """Give ``src`` the low-frequency amplitude of ``trg``.

    Args:
        src: (N, 3, H, W) float source images.
        trg: (N, 3, H, W) float target images (or (1, 3, H, W), broadcast over N).
        beta: band half-size as a fraction of ``min(H, W)``.

    Returns:
        (N, 3, H, W) float: amplitude of ``trg`` inside the band, of ``src`` outside it,
        phase of ``src`` everywhere.
    """
    if src.shape[-2:] != trg.shape[-2:]:
        raise ValueError(f"src {tuple(src.shape)} and trg {tuple(trg.shape)} differ in size")
    h, w = src.shape[-2:]
    mask = low_freq_mask(h, w, beta, src.device)
    if not bool(mask.any()):
        return src.clone()
    f_src = torch.fft.fft2(src.double())
    f_trg = torch.fft.fft2(trg.double())
    amp = torch.where(mask, f_trg.abs(), f_src.abs())
    out = torch.fft.ifft2(torch.polar(amp, f_src.angle())).real
    return out.to(src.dtype)
