"""The one inference path: from source slices to LV masks on their own grid.

For each stack of records (one patient's slices and phases, see :func:`stacks`):

1. **prepare** every frame as the model was trained: resample to the plan's spacing and
   normalise the whole image (:func:`lvseg.data.preprocess.resample_and_normalise`);
2. **place** the crop: ``"located"`` finds the heart in the stack's whole images
   (:func:`lvseg.segment.locate.locate`), ``"centre"`` takes the image centre; one centre for
   the whole stack, so a study's slices and phases are cut alike;
3. **segment** the crops (:meth:`Segmenter.lv_probability`): with ``tta``, the mean LV
   probability over the 8 flips and quarter turns of each crop (test-time augmentation); an
   ensemble is a network that averages its members (:mod:`lvseg.deploy.ensemble`);
4. **map back** the LV probability onto the source grid
   (:func:`lvseg.data.preprocess.to_source_grid`), threshold it and keep the largest
   connected region (the one blood pool; nnU-Net's post-processing, on by default because the
   Sunnybrook cross-validation says so: HD95 8.3 -> 4.8 mm, Dice +0.002; ``largest_component``
   off keeps every region).

``lvseg evaluate``, ``lvseg explain``, the export checks and ``lvseg predict`` all call
:class:`Segmenter`; none prepares a slice by itself. Torch-free: the network is anything with
the :class:`~lvseg.segment.network.Network` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from lvseg.data.preprocess import (
    PreprocessPlan,
    crop_box_at,
    crop_record,
    resample_and_normalise,
    to_source_grid,
)
from lvseg.data.records import SliceRecord
from lvseg.errors import InvalidInputError
from lvseg.segment.locate import LOCATE_SIGMA_MM, LOCATE_SIGMA_PX, Placement, centred, locate
from lvseg.segment.network import Network, lv_softmax

CROPS = ("located", "centre")
"""How the crop is placed: on the heart located in the stack, or at the image centre."""
BATCH_SIZE = 8
"""Frames per network call. Small, because ONNX Runtime's memory arena grows with the batch; to
see what a larger one buys on a machine, time both (``python -m benchmarks.deploy_speed --batch 32``
against ``--batch 8``)."""
THRESHOLD = 0.5
TTA_TRANSFORMS = 8
"""Test-time augmentation: the 4 quarter turns, each also mirrored (the dihedral group of the
square, which keeps a square crop square and its pixels on the grid: no interpolation)."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` as frames are segmented."""


@dataclass
class SliceSegmentation:
    """One record segmented: what the network saw, what it said, and the mask on the source."""

    record: SliceRecord
    """The record as given (source grid)."""
    crop: SliceRecord
    """The network's input: resampled, normalised, cropped (masks cropped alike, where given);
    ``crop.geometry`` maps it back."""
    probability: np.ndarray
    """(S, S) float32 LV probability on the crop."""
    mask: np.ndarray
    """(rows, cols) bool LV mask on the record's own grid."""
    placement: Placement
    view_agreement: float | None = None
    """With ``tta``: how far the :data:`TTA_TRANSFORMS` views agree on the crop, the mean Dice
    of each view's mask (``p > 0.5``) with the averaged one (1 where none has LV); None
    without."""

    def row(self) -> dict[str, Any]:
        """Which slice this is and where its crop was placed: the first fields of every
        per-slice row (``lvseg evaluate``'s slices.csv, ``lvseg explain``'s metrics.json)."""
        record = self.record
        return {
            "key": record.key,
            "patient_id": record.patient_id,
            "slice_index": record.slice_index,
            "phase_index": record.phase_index,
            "phase": record.phase,
            "source": record.source,
            "crop": self.placement.scope,
        }


def stacks(records: Sequence[SliceRecord]) -> list[list[int]]:
    """Positions of the records that form one stack, in order of first appearance.

    One patient's records with a slice index and the same source grid (shape and spacing) are
    one stack; a record without a slice index is a stack of its own.
    """
    groups: dict[object, list[int]] = {}
    for i, record in enumerate(records):
        if record.slice_index is None:
            key: object = ("record", i)
        else:
            key = (record.patient_id, record.image.shape, record.pixel_spacing_mm)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


class Segmenter:
    """A network, its preprocessing plan and a crop rule: records in, LV masks out."""

    def __init__(
        self,
        network: Network,
        plan: PreprocessPlan,
        *,
        crop: str = "located",
        batch_size: int = BATCH_SIZE,
        tta: bool = False,
        largest_component: bool = True,
    ) -> None:
        if crop not in CROPS:
            raise InvalidInputError(None, f"unknown crop {crop!r}; choose {' or '.join(CROPS)}")
        self.network = network
        self.plan = plan
        self.crop = crop
        self.batch_size = max(1, int(batch_size))
        self.tta = bool(tta)
        self.largest_component = bool(largest_component)

    def lv_probability(self, images: np.ndarray) -> np.ndarray:
        """LV probability (B, H, W) of prepared images (B, 1, H, W): crops or whole images."""
        return lv_softmax(self.network.logits(images), self.network.lv_class)

    def crop_probability(self, crops: np.ndarray) -> np.ndarray:
        """LV probability (B, S, S) of prepared square crops (B, 1, S, S), averaged over the
        :data:`TTA_TRANSFORMS` views of each crop where ``tta`` is on."""
        return self.crop_views(crops).mean(axis=0, dtype=np.float32)

    def crop_views(self, crops: np.ndarray) -> np.ndarray:
        """LV probability (V, B, S, S) of each view of prepared square crops (B, 1, S, S),
        mapped back onto the crop: the :data:`TTA_TRANSFORMS` views where ``tta`` is on, the
        crop alone (V = 1) where not."""
        if not self.tta:
            return self.lv_probability(crops)[None]
        views = np.concatenate([dihedral(crops, k) for k in range(TTA_TRANSFORMS)])
        found = self.lv_probability(views).reshape(TTA_TRANSFORMS, len(crops), *crops.shape[-2:])
        return np.stack([undo_dihedral(found[k], k) for k in range(TTA_TRANSFORMS)])

    def place(self, prepared: Sequence[SliceRecord]) -> Placement:
        """The crop centre of one stack of prepared (whole) frames."""
        shape = prepared[0].image.shape
        if self.crop == "centre":
            return centred(shape, "centred on the image, as asked")
        spacing = self.plan.target_spacing_mm if prepared[0].pixel_spacing_mm else None
        # Whole images in batches of about as many pixels as a batch of crops: ONNX Runtime's
        # arena keeps its largest activations, so bigger batches of whole images raise
        # predict's peak memory for no speed (measured on the 5 Sunnybrook DICOM studies: 857
        # MiB with batches of 8 whole images, 492 MiB with 2 and predict keeping only masks,
        # 19.6 and 19.0 s), and PyTorch ran them 2.3x faster in evaluate (4 against 16).
        pixels = max(1, shape[0] * shape[1])
        whole_batch = max(1, self.batch_size * self.plan.crop_size**2 // pixels)
        return locate(
            self.lv_probability,
            [p.image for p in prepared],
            [-1 if p.slice_index is None else p.slice_index for p in prepared],
            [-1 if p.phase_index is None else p.phase_index for p in prepared],
            self.plan.crop_size,
            sigma_px=LOCATE_SIGMA_MM / min(spacing) if spacing else LOCATE_SIGMA_PX,
            batch_size=whole_batch,
        )

    def iter_segment(
        self, records: Sequence[SliceRecord], progress: ProgressCallback | None = None
    ) -> Iterator[tuple[int, SliceSegmentation]]:
        """``(position, result)`` for every record, one stack at a time (only one stack's
        whole images are held in memory)."""
        total, done = len(records), 0
        for group in stacks(records):
            prepared = [resample_and_normalise(records[i], self.plan) for i in group]
            placement = self.place(prepared)
            box = crop_box_at(placement.centre, self.plan.crop_size)
            for start in range(0, len(group), self.batch_size):
                chunk = [crop_record(p, box) for p in prepared[start : start + self.batch_size]]
                views = self.crop_views(np.stack([c.image for c in chunk])[:, None])
                probability = views.mean(axis=0, dtype=np.float32)
                for offset, (crop, p) in enumerate(zip(chunk, probability, strict=True)):
                    position = group[start + offset]
                    mask = to_source_grid(p, crop.geometry) > THRESHOLD
                    if self.largest_component:
                        mask = largest_component(mask)
                    agreement = view_agreement(views[:, offset]) if self.tta else None
                    yield (
                        position,
                        SliceSegmentation(records[position], crop, p, mask, placement, agreement),
                    )
                done += len(chunk)
                if progress is not None:
                    progress(done, total)

    def segment(
        self, records: Sequence[SliceRecord], progress: ProgressCallback | None = None
    ) -> list[SliceSegmentation]:
        """Every record segmented, in the order given."""
        found: list[SliceSegmentation | None] = [None] * len(records)
        for position, result in self.iter_segment(records, progress):
            found[position] = result
        return found  # type: ignore[return-value]


def dihedral(images: np.ndarray, k: int) -> np.ndarray:
    """View ``k`` (0-7) of square images (..., S, S): ``k % 4`` quarter turns, mirrored left to
    right for ``k >= 4``.

    >>> a = np.arange(4).reshape(2, 2)
    >>> all((undo_dihedral(dihedral(a, k), k) == a).all() for k in range(8))
    True
    """
    out = np.rot90(images, k % 4, axes=(-2, -1))
    return np.ascontiguousarray(out[..., ::-1] if k >= 4 else out)


def undo_dihedral(images: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`dihedral` ``k``: maps a view's prediction back onto the crop."""
    out = images[..., ::-1] if k >= 4 else images
    return np.ascontiguousarray(np.rot90(out, -(k % 4), axes=(-2, -1)))


def view_agreement(views: np.ndarray) -> float:
    """The mean Dice of each view's mask (``p > 0.5``) with the mask of their mean, for the LV
    probabilities (V, S, S) of one crop's views; 1 where neither has LV.

    >>> a = np.zeros((2, 4, 4), np.float32); a[:, :2, :2] = 1.0; a[1, :2, 2] = 1.0
    >>> view_agreement(a)  # the mean's mask is the 2x2 square; the second view adds 2 pixels
    0.9
    """
    consensus = views.mean(axis=0) > THRESHOLD
    scores = []
    for view in views > THRESHOLD:
        total = int(view.sum()) + int(consensus.sum())
        scores.append(1.0 if total == 0 else 2.0 * float((view & consensus).sum()) / total)
    return float(np.mean(scores))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a boolean mask (the mask itself when it has one).

    >>> m = np.zeros((5, 7), bool); m[1:3, 1:3] = True; m[2:5, 4:7] = True
    >>> int(largest_component(m).sum())
    9
    """
    labels, count = ndi.label(mask, structure=np.ones((3, 3), bool))
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1
