"""Where to put the crop: locate the heart in a stack of whole images, or centre on the image.

The network is fully convolutional, so it runs on whole (resampled, normalised) images as well
as on crops. To locate the heart, it segments the whole images of a stack (every slice, at up
to :data:`LOCATE_PHASES` phases spread over the cycle); each slice votes with the share of its
phases that call a pixel LV, and the crop centre is the densest cluster of those votes (smoothed
peak, refined to the centroid of the votes around it). A blood pool seen in every slice and
phase outvotes bright patches seen here and there. Without any vote, or when the image fits in
the crop, the crop is centred on the image.

A stack is what one patient's records give (every reader's records carry the patient, slice and
phase); a record with no slice index is a stack of its own, located by itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from lvseg.data.preprocess import crop_padded, image_centre

LOCATE_PHASES = 4
LOCATE_MULTIPLE = 32
"""Whole images are padded to a multiple of this for the locating pass (every pooling of the
registered networks stays integral)."""
LOCATE_SIGMA_MM = 8.0
LOCATE_SIGMA_PX = 6.0
"""Smoothing of the LV votes (the width of a small blood pool); in pixels where the spacing is
unknown (6 px at Sunnybrook's ~1.37 mm)."""

Probability = Callable[[np.ndarray], np.ndarray]
"""LV probability (B, H, W) of images (B, 1, H, W)."""


@dataclass(frozen=True)
class Placement:
    """Where the crop of every frame of one stack sits, and why."""

    centre: tuple[float, float]
    """(row, col) in resampled pixels."""
    located: bool
    """True where the heart was located; False where the crop is centred on the image."""
    scope: str
    """``"stack"`` (located from the stack's slices and phases), ``"slice"`` (a single frame),
    or ``"image"`` (centred on the image)."""
    note: str
    """One sentence saying how the centre was found."""


def centred(shape: tuple[int, int], note: str) -> Placement:
    return Placement(image_centre(shape), located=False, scope="image", note=note)


def voting_frames(slices: Sequence[int], phases: Sequence[int]) -> list[int]:
    """Positions of the frames that vote: every slice, at up to :data:`LOCATE_PHASES` of the
    phases present, spread evenly over them (all of them when there are that few)."""
    present = sorted(set(phases))
    count = len(present)
    picks = {present[round(i * count / LOCATE_PHASES) % count] for i in range(LOCATE_PHASES)}
    return [i for i, phase in enumerate(phases) if phase in picks]


def _pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    rows, cols = image.shape
    target = (math.ceil(rows / multiple) * multiple, math.ceil(cols / multiple) * multiple)
    return crop_padded(image, (0, target[0], 0, target[1]), float(image.min()))


def locate(
    lv_probability: Probability,
    images: Sequence[np.ndarray],
    slices: Sequence[int],
    phases: Sequence[int],
    crop_size: int,
    *,
    sigma_px: float = LOCATE_SIGMA_PX,
    batch_size: int = 8,
) -> Placement:
    """The crop centre of a stack of whole prepared images of one shape (``slices[i]`` and
    ``phases[i]`` say where image i sits in the stack)."""
    shape = images[0].shape
    if max(shape) <= crop_size:
        return centred(shape, "the image fits in the crop: centred on the image")
    voters = voting_frames(slices, phases)
    calls = np.zeros((len(voters), *shape), bool)  # the LV pixels of each voting frame
    for start in range(0, len(voters), batch_size):
        chunk = voters[start : start + batch_size]
        padded = np.stack([_pad_to_multiple(images[i], LOCATE_MULTIPLE) for i in chunk])
        probability = lv_probability(padded[:, None])[:, : shape[0], : shape[1]]
        calls[start : start + len(chunk)] = probability > 0.5
    # Each slice votes with the share of its voting phases that call a pixel LV.
    voter_slices = np.array([slices[i] for i in voters])
    votes = np.zeros(shape, np.float32)
    for s in np.unique(voter_slices):
        votes += calls[voter_slices == s].mean(axis=0, dtype=np.float32)
    if not votes.any():
        return centred(shape, "no LV found in the whole image: centred on the image")
    # The densest cluster of votes, not the largest region: on whole images the network also
    # calls bright patches of chest wall LV, in big but thin regions; a blood pool gathers votes
    # from every slice and phase in one compact place. Measured on the five Sunnybrook DICOM
    # studies: within 2 px of the centroid of the expert contours for each, where the largest
    # connected region of votes missed the heart (SCD0000101: it took the chest wall).
    density = ndi.gaussian_filter(votes, sigma_px)
    peak = np.unravel_index(int(np.argmax(density)), shape)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    near = (rows - peak[0]) ** 2 + (cols - peak[1]) ** 2 <= (crop_size / 4) ** 2
    centre = ndi.center_of_mass(np.where(near, votes, 0.0))
    kept = float(votes[near].sum() / votes.sum())
    slice_count = len({slices[i] for i in voters})
    phase_count = len({phases[i] for i in voters})
    scope = "stack" if len(voters) > 1 else "slice"
    where = f"{slice_count} slices x {phase_count} phases" if scope == "stack" else "one frame"
    return Placement(
        (float(centre[0]), float(centre[1])),
        located=True,
        scope=scope,
        note=f"located: the densest cluster of LV votes ({kept:.0%} of the votes of {where})",
    )
