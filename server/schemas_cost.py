"""What a person's answer costs, in seconds (issue 24): the one table of the cost model, part
of the contract because both sides of the wire charge it: the trainer's in-process simulated
oracle and its seconds budget (``trainer/cost.py``), and the simulated oracle that answers over
HTTP with these times as each answer's ``lead_time_ms`` (``adamcu-oracle --cost-model``).

Seconds per query kind (mean; docs/results.md, "Annotator seconds", cites each):

- ``pixel``: a click that names the class of one marked pixel. Bearman et al., "What's the
  point: semantic segmentation with point supervision" (ECCV 2016) measured 2.4 s per point
  click on PASCAL VOC (one point on an object of a named class; 22.1 s per image for image
  labels plus one point per class). We take their 2.4 s.
- ``region``: a click that names the dominant class of one outlined superpixel. Cai et al.,
  "Revisiting superpixels for active learning in semantic segmentation with realistic
  annotation costs" (CVPR 2021) count such a query as one click, like a point. They measured
  no seconds; **our assumption**: the point click's 2.4 s plus 0.6 s to take in the outline
  and judge which class covers most of it, 3.0 s.
- ``skip``: "can't tell" or Space. No study measured it; **our assumption**: 1.2 s, half a
  point click (the person looks, then gives up without choosing among the classes).

For scale: a Cityscapes frame took more than 1.5 h to annotate in full (Cordts et al., "The
Cityscapes dataset for semantic urban scene understanding", CVPR 2016), 5,400 s: the price of
1,800 region clicks or 2,250 point clicks.

A charge is its mean times a factor drawn uniformly from ``[1 - spread, 1 + spread]``
(:func:`spread_factor`; spread 0: the mean). Pure: the caller draws ``u`` from its own seeded
generator.
"""

from __future__ import annotations

PIXEL, REGION, SKIP = "pixel", "region", "skip"
# seconds a query kind costs a person, on average (sources in the module docstring)
PIXEL_SECONDS = 2.4  # Bearman et al. ECCV 2016: 2.4 s per point click
REGION_SECONDS = 3.0  # our assumption: a point click plus 0.6 s for the outline (Cai et al.)
SKIP_SECONDS = 1.2  # our assumption: half a point click
CITYSCAPES_IMAGE_SECONDS = 5400.0  # Cordts et al. CVPR 2016: > 1.5 h per fine annotation
# the mean seconds of each query kind: the cost model's table
MEAN_SECONDS = {PIXEL: PIXEL_SECONDS, REGION: REGION_SECONDS, SKIP: SKIP_SECONDS}


def spread_factor(u: float, spread: float) -> float:
    """The factor of a charge for a uniform draw ``u`` in [0, 1): ``1 - spread + 2 spread u``,
    uniform on ``[1 - spread, 1 + spread]`` (elementwise for a numpy array of draws)."""
    return 1.0 - spread + 2.0 * spread * u
