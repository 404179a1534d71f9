"""Plan preprocessing from the data, apply it to records, and cache the result for training.

Three steps, as nnU-Net does them:

1. :func:`fingerprint` measures a dataset: pixel spacings, image shapes, intensities, structure
   areas, the size of the heart and how far it sits from the image centre.
2. :func:`plan_preprocessing` turns the fingerprint into a :class:`PreprocessPlan`: the in-plane
   spacing to resample to, a square crop size, the training jitter and the intensity
   normalisation. The plan is data (``to_dict``/``from_dict``) and is saved with every run.
3. :func:`preprocess_record` applies a plan to one record (resample, normalise, crop), and
   :func:`build_cache` applies it to a whole dataset once and stores memory-mapped ``.npy``
   stacks, so a training epoch slices arrays instead of decoding DICOM or PNG files.

Per record, in this order:

- **Resample** to the plan's spacing where the record's spacing is known (records without a
  spacing keep their pixel grid). Images use cubic splines (order 3, as nnU-Net) with a Gaussian
  pre-filter when shrinking, to avoid aliasing; masks are resampled *linearly as floats and
  thresholded above 0.5*, which places the boundary on the half-level contour of the original
  mask (nearest neighbour would shift it by up to half a pixel and leave staircase edges).
  Strictly above: linear weights sum to one, so disjoint structures (LV, myocardium, RV) can
  never both exceed 0.5 and stay disjoint. The zoom
  actually applied (new shape / old shape) goes into ``Geometry.zoom``.
- **Normalise** the whole resampled image: clip to its own 0.5th and 99.5th percentiles (MR
  intensities have no physical unit and a few very bright pixels, e.g. flowing blood or fat,
  would otherwise dominate), then z-score with the mean and standard deviation of the clipped
  image. Normalising the whole image, not the crop, makes the values independent of where the
  crop falls, so cached regions and jittered crops agree exactly.
- **Crop** a square around the heart: the centre of the bounding box of all labelled structures
  (training), or the image centre (``centre="image"``, inference, where no mask exists). Parts
  of the crop outside the image are padded with the image's darkest clipped value (what an MR
  scanner records outside the body) and with background in the masks. ``Geometry.crop_box`` is
  (row0, row1, col0, col1) in resampled pixels and may reach outside the image.

>>> import numpy as np
>>> from lvseg.data.records import Geometry, SliceRecord
>>> lv = np.zeros((64, 64), bool); lv[20:40, 24:44] = True
>>> record = SliceRecord(image=np.random.rand(64, 64).astype(np.float32), masks={"lv": lv},
...                      patient_id="P1", source="p1.png", geometry=Geometry((64, 64)))
>>> plan = plan_preprocessing(fingerprint([record]))
>>> plan.crop_size, plan.target_spacing_mm
(64, None)
>>> preprocess_record(record, plan).image.shape
(64, 64)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.ndimage as ndi

from lvseg.atomic import atomic_directory
from lvseg.data.records import STRUCTURES, Geometry, SliceRecord
from lvseg.errors import InvalidInputError
from lvseg.progress import track

if TYPE_CHECKING:
    import torch

PREPROCESS_VERSION = 1
"""Bump when the arrays produced for a given plan change; it is part of every cache key."""

FINGERPRINT_VERSION = 1

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each record of a long loop."""

Centre = Literal["heart", "image"]

_INTENSITY_PERCENTILES = (0.5, 1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.5)
_SAMPLES_PER_IMAGE = 4096


# --------------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------------


@dataclass
class Stats:
    """Summary of one quantity measured once per record."""

    count: int
    min: float
    p5: float
    median: float
    p95: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Stats | None:
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return None
        p5, median, p95 = np.percentile(values, [5, 50, 95])
        return cls(
            count=int(values.size),
            min=float(values.min()),
            p5=float(p5),
            median=float(median),
            p95=float(p95),
            max=float(values.max()),
            mean=float(values.mean()),
        )


@dataclass
class Measured:
    """A length or area measured in mm (records with a known spacing) and in px (the others).

    Kept apart rather than mixed: a pixel count means nothing in mm without its spacing.
    """

    mm: Stats | None = None
    px: Stats | None = None

    @classmethod
    def of(cls, mm: Sequence[float], px: Sequence[float]) -> Measured:
        return cls(mm=Stats.of(mm), px=Stats.of(px))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measured:
        return cls(**{k: Stats(**v) if v is not None else None for k, v in data.items()})


@dataclass
class Intensity:
    """Pooled intensity percentiles (of a fixed-seed sample of pixels per image), mean and std."""

    percentiles: dict[str, float]
    mean: float
    std: float
    samples: int

    @classmethod
    def of(cls, samples: np.ndarray) -> Intensity | None:
        if samples.size == 0:
            return None
        values = np.percentile(samples, _INTENSITY_PERCENTILES)
        return cls(
            percentiles={
                f"p{q:g}": float(v) for q, v in zip(_INTENSITY_PERCENTILES, values, strict=True)
            },
            mean=float(samples.mean()),
            std=float(samples.std()),
            samples=int(samples.size),
        )


@dataclass
class Fingerprint:
    """What a dataset looks like, measured once; the input of :func:`plan_preprocessing`.

    Lengths: ``heart_extent`` is the larger side of the bounding box of all labelled structures;
    ``heart_offset`` is how far (Chebyshev distance) its centre lies from the image centre;
    ``centre_crop_extent`` is the side of the smallest square centred on the image that holds
    the whole heart (what an inference-time centre crop must cover).
    """

    n_records: int
    n_patients: int
    group_counts: dict[str, int]
    phase_counts: dict[str, int]
    structure_counts: dict[str, int]
    spacing_known: int
    spacing_unknown: int
    spacing_median_mm: tuple[float, float] | None
    spacing_min_mm: tuple[float, float] | None
    spacing_max_mm: tuple[float, float] | None
    shape_counts: dict[str, int]
    shape_median: tuple[int, int]
    intensity_image: Intensity | None
    intensity_foreground: Intensity | None
    per_image_low: Stats | None
    per_image_high: Stats | None
    area: dict[str, Measured]
    heart_extent: Measured
    heart_offset: Measured
    centre_crop_extent: Measured
    version: int = FINGERPRINT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        data = dict(data)
        for name in ("spacing_median_mm", "spacing_min_mm", "spacing_max_mm", "shape_median"):
            data[name] = tuple(data[name]) if data[name] is not None else None
        for name in ("intensity_image", "intensity_foreground"):
            data[name] = Intensity(**data[name]) if data[name] is not None else None
        for name in ("per_image_low", "per_image_high"):
            data[name] = Stats(**data[name]) if data[name] is not None else None
        data["area"] = {k: Measured.from_dict(v) for k, v in data["area"].items()}
        for name in ("heart_extent", "heart_offset", "centre_crop_extent"):
            data[name] = Measured.from_dict(data[name])
        return cls(**data)


def heart_mask(record: SliceRecord) -> np.ndarray | None:
    """Union of all labelled structures (None when the record has no non-empty mask)."""
    masks = [m for m in record.masks.values() if m.any()]
    if not masks:
        return None
    return np.logical_or.reduce(masks)


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1), half-open, of the true pixels of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def heart_centre(record: SliceRecord) -> tuple[float, float] | None:
    """Centre (row, col) of the bounding box of the labelled structures, None without masks.

    The box centre rather than the LV centroid, so a crop centred there holds the RV too where
    it is labelled, and its side equals the box side (what :class:`Fingerprint` measures).
    """
    mask = heart_mask(record)
    if mask is None:
        return None
    r0, r1, c0, c1 = _bounding_box(mask)
    return (r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2


def image_centre(shape: tuple[int, int]) -> tuple[float, float]:
    return (shape[0] - 1) / 2, (shape[1] - 1) / 2


def fingerprint(
    records: Sequence[SliceRecord], *, progress: ProgressCallback | None = None
) -> Fingerprint:
    """Measure a dataset (a :class:`~lvseg.data.records.Dataset` or a list of records).

    Intensities are pooled from a fixed-seed sample of pixels per image (whole image, and the
    labelled structures as "foreground"), so the numbers are reproducible and cheap.
    """
    records = list(records)
    if not records:
        raise InvalidInputError(None, "cannot fingerprint an empty dataset")
    rng = np.random.default_rng(0)
    spacings = np.array([r.pixel_spacing_mm for r in records if r.pixel_spacing_mm is not None])
    whole_samples, foreground_samples, lows, highs = [], [], [], []
    areas: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in STRUCTURES}
    extent: tuple[list[float], list[float]] = ([], [])
    offset: tuple[list[float], list[float]] = ([], [])
    centre_extent: tuple[list[float], list[float]] = ([], [])
    shapes: dict[str, int] = {}
    for done, record in enumerate(track(records, "fingerprint"), start=1):
        image = record.image
        shapes[f"{image.shape[0]}x{image.shape[1]}"] = (
            shapes.get(f"{image.shape[0]}x{image.shape[1]}", 0) + 1
        )
        flat = image.reshape(-1)
        whole_samples.append(flat[rng.integers(0, flat.size, min(_SAMPLES_PER_IMAGE, flat.size))])
        low, high = np.percentile(image, [0.5, 99.5])
        lows.append(low)
        highs.append(high)
        spacing = record.pixel_spacing_mm
        unit = 1 if spacing is None else 0  # index into the (mm, px) pairs
        scale = (1.0, 1.0) if spacing is None else spacing
        for name, mask in record.masks.items():
            if name in areas:
                areas[name][unit].append(float(mask.sum()) * scale[0] * scale[1])
        heart = heart_mask(record)
        if heart is not None:
            foreground = image[heart]
            foreground_samples.append(
                foreground[
                    rng.integers(0, foreground.size, min(_SAMPLES_PER_IMAGE, foreground.size))
                ]
            )
            r0, r1, c0, c1 = _bounding_box(heart)
            extent[unit].append(max((r1 - r0) * scale[0], (c1 - c0) * scale[1]))
            centre = heart_centre(record)
            middle = image_centre(image.shape)
            assert centre is not None
            offset[unit].append(
                max(abs(centre[0] - middle[0]) * scale[0], abs(centre[1] - middle[1]) * scale[1])
            )
            # Half-sides of the smallest image-centred square holding the box, per axis.
            half_rows = max(middle[0] - (r0 - 0.5), (r1 - 0.5) - middle[0]) * scale[0]
            half_cols = max(middle[1] - (c0 - 0.5), (c1 - 0.5) - middle[1]) * scale[1]
            centre_extent[unit].append(2 * max(half_rows, half_cols))
        if progress is not None:
            progress(done, len(records))

    def counts(values: Sequence[str | None]) -> dict[str, int]:
        found: dict[str, int] = {}
        for value in values:
            found[str(value)] = found.get(str(value), 0) + 1
        return dict(sorted(found.items()))

    def pair(values: np.ndarray) -> tuple[float, float]:
        return float(values[0]), float(values[1])

    shape_array = np.array([r.image.shape for r in records])
    return Fingerprint(
        n_records=len(records),
        n_patients=len({r.patient_id for r in records}),
        group_counts=counts([r.group for r in records]),
        phase_counts=counts([r.phase for r in records]),
        structure_counts={s: sum(s in r.masks for r in records) for s in STRUCTURES},
        spacing_known=len(spacings),
        spacing_unknown=len(records) - len(spacings),
        spacing_median_mm=pair(np.median(spacings, axis=0)) if len(spacings) else None,
        spacing_min_mm=pair(spacings.min(axis=0)) if len(spacings) else None,
        spacing_max_mm=pair(spacings.max(axis=0)) if len(spacings) else None,
        shape_counts=dict(sorted(shapes.items(), key=lambda item: -item[1])),
        shape_median=(
            int(np.median(shape_array[:, 0])),
            int(np.median(shape_array[:, 1])),
        ),
        intensity_image=Intensity.of(np.concatenate(whole_samples)),
        intensity_foreground=Intensity.of(
            np.concatenate(foreground_samples) if foreground_samples else np.empty(0)
        ),
        per_image_low=Stats.of(lows),
        per_image_high=Stats.of(highs),
        area={s: Measured.of(*areas[s]) for s in STRUCTURES if areas[s][0] or areas[s][1]},
        heart_extent=Measured.of(*extent),
        heart_offset=Measured.of(*offset),
        centre_crop_extent=Measured.of(*centre_extent),
    )


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------


@dataclass
class PreprocessPlan:
    """How every record is preprocessed; derived from a :class:`Fingerprint`, saved with runs.

    ``crop_size`` is the side of the square the network sees, in pixels of the target grid;
    training crops move by up to ``jitter_px`` per axis around the heart centre, and "far" crops
    (a share of the training crops, :attr:`lvseg.config.DataConfig.far_crops`) by up to
    ``reach_px``, so a cache stores ``context_size = crop_size + 2 * max(jitter_px, reach_px)``
    around it. ``notes`` say why.
    """

    target_spacing_mm: tuple[float, float] | None
    crop_size: int
    jitter_px: int
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    normalisation: str = "clip_zscore"
    image_order: int = 3
    structures: tuple[str, ...] = STRUCTURES
    assumed_spacing_mm: tuple[float, float] | None = None
    """The spacing given to records that store none (PNG folders), in training and inference."""
    reach_px: int = 0
    """How far from the heart centre a far training crop may sit (0: no far crops)."""
    version: int = PREPROCESS_VERSION
    notes: list[str] = field(default_factory=list)

    @property
    def context_size(self) -> int:
        return self.crop_size + 2 * self.margin_px

    @property
    def margin_px(self) -> int:
        """Pixels stored around the crop on each side: the largest offset a crop may take."""
        return max(self.jitter_px, self.reach_px)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessPlan:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for name in ("target_spacing_mm", "assumed_spacing_mm"):
            if data.get(name) is not None:
                data[name] = tuple(float(v) for v in data[name])
        for name in ("clip_percentiles", "structures"):
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """The fields that decide the arrays (everything but ``notes``): the cache key's part."""
        data = self.to_dict()
        data.pop("notes")
        return data


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple - 1e-9) * multiple)


def _in_target_px(measured: Measured, statistic: str, target: tuple[float, float] | None) -> float:
    """A length statistic in pixels of the target grid, the larger over mm and px records."""
    values = []
    if measured.px is not None:
        values.append(getattr(measured.px, statistic))
    if measured.mm is not None and target is not None:
        values.append(getattr(measured.mm, statistic) / min(target))
    return max(values, default=0.0)


def plan_preprocessing(
    fingerprint: Fingerprint,
    *,
    target_spacing_mm: tuple[float, float] | None = None,
    margin_fraction: float = 0.15,
    jitter_statistic: Literal["median", "p95", "max"] = "p95",
    max_jitter_fraction: float = 0.25,
    centre_statistic: Literal["median", "p95", "max"] = "p95",
    multiple: int = 16,
    min_crop: int = 64,
    max_crop: int = 256,
    clip_percentiles: tuple[float, float] = (0.5, 99.5),
) -> PreprocessPlan:
    """Derive a :class:`PreprocessPlan` from a fingerprint; the keyword arguments are the policy.

    - Target spacing: the median of the known spacings (``target_spacing_mm`` overrides), None
      when no record has one: then every record keeps its pixel grid.
    - Jitter: the ``jitter_statistic`` of how far the heart sits from the image centre, capped at
      ``max_jitter_fraction`` of the heart extent with margin. Training crops then see the heart
      as far off-centre as an inference-time centre crop typically will, so the network does not
      learn that the LV is always in the middle.
    - Crop: the largest heart extent, plus ``margin_fraction`` of it on each side for context
      (myocardium, RV, surroundings), plus the jitter on each side so a jittered crop still holds
      the whole heart; at least the ``centre_statistic`` of the image-centred heart extent, so an
      inference crop at the image centre holds the heart; rounded up to a multiple of
      ``multiple`` (four 2x poolings stay integral) and clamped to [``min_crop``, ``max_crop``].

    For the Sunnybrook PNGs (no spacing, 256x256; LV up to 62 px across; LV centre within 16.5
    px of the image centre for 95% of slices; 76 px image-centred extent at p95, 98 px at most)
    this gives ``62 x 1.3 + 2 x 16 = 112.6 -> 128`` px and 16 px jitter, and a 128 px centre
    crop holds every labelled LV.
    """
    notes: list[str] = []
    if target_spacing_mm is None and fingerprint.spacing_median_mm is not None:
        target_spacing_mm = fingerprint.spacing_median_mm
        notes.append(
            f"target spacing {target_spacing_mm[0]:.3g} x {target_spacing_mm[1]:.3g} mm: median "
            f"of {fingerprint.spacing_known} known spacings"
        )
    elif target_spacing_mm is not None:
        target_spacing_mm = (float(target_spacing_mm[0]), float(target_spacing_mm[1]))
        notes.append(f"target spacing {target_spacing_mm} mm: given")
    else:
        notes.append("no record has a pixel spacing: images keep their pixel grid")
    if fingerprint.spacing_unknown and target_spacing_mm is not None:
        notes.append(f"{fingerprint.spacing_unknown} records without spacing keep their grid")

    extent = _in_target_px(fingerprint.heart_extent, "max", target_spacing_mm)
    if extent == 0.0:
        # No masks at all: fall back to the median image side.
        extent = float(min(fingerprint.shape_median)) / (1 + 2 * margin_fraction)
        notes.append("no labelled structure: crop from the median image size")
    needed = extent * (1 + 2 * margin_fraction)
    offset = _in_target_px(fingerprint.heart_offset, jitter_statistic, target_spacing_mm)
    jitter_px = int(round(min(offset, max_jitter_fraction * needed)))
    centre_fit = _in_target_px(fingerprint.centre_crop_extent, centre_statistic, target_spacing_mm)
    crop = min(
        max(_round_up(max(needed + 2 * jitter_px, centre_fit), multiple), min_crop), max_crop
    )
    notes.append(
        f"crop {crop} px: the larger of (largest heart extent {extent:.1f} px x "
        f"(1 + 2 x {margin_fraction:g}) margin + 2 x {jitter_px} px jitter = "
        f"{needed + 2 * jitter_px:.1f}) and ({centre_statistic} image-centred heart extent "
        f"{centre_fit:.1f}), rounded up to a multiple of {multiple} within [{min_crop}, {max_crop}]"
    )
    notes.append(
        f"jitter {jitter_px} px: {jitter_statistic} heart offset from the image centre "
        f"({offset:.1f} px), at most {max_jitter_fraction:g} of the heart extent with margin"
    )
    largest_centred = _in_target_px(fingerprint.centre_crop_extent, "max", target_spacing_mm)
    if largest_centred:
        holds = "holds every" if largest_centred <= crop else "does not hold every"
        notes.append(
            f"an image-centred {crop} px crop {holds} labelled heart "
            f"(largest image-centred extent {largest_centred:.1f} px)"
        )
    notes.append(
        f"intensity: clip to per-image percentiles {clip_percentiles}, then z-score per image"
    )
    return PreprocessPlan(
        target_spacing_mm=target_spacing_mm,
        crop_size=crop,
        jitter_px=jitter_px,
        clip_percentiles=(float(clip_percentiles[0]), float(clip_percentiles[1])),
        notes=notes,
    )


# --------------------------------------------------------------------------------------------
# Per record
# --------------------------------------------------------------------------------------------


def resample_record(
    record: SliceRecord, target_spacing_mm: tuple[float, float] | None, *, image_order: int = 3
) -> SliceRecord:
    """The record at ``target_spacing_mm`` (unchanged where either spacing is unknown).

    The new shape is the old one times spacing / target, rounded; ``Geometry.zoom`` holds the
    exact factor applied (new shape / old shape), ``pixel_spacing_mm`` the spacing it gives.
    """
    spacing = record.pixel_spacing_mm
    if spacing is None or target_spacing_mm is None:
        return record
    rows, cols = record.image.shape
    shape = (
        max(1, round(rows * spacing[0] / target_spacing_mm[0])),
        max(1, round(cols * spacing[1] / target_spacing_mm[1])),
    )
    if shape == (rows, cols):
        return record
    zoom = (shape[0] / rows, shape[1] / cols)
    image = record.image.astype(np.float32, copy=False)
    if min(zoom) < 1:
        # Anti-aliasing before shrinking, with scikit-image's rule sigma = (1/zoom - 1) / 2.
        sigma = [max(0.0, (1 / z - 1) / 2) for z in zoom]
        image = ndi.gaussian_filter(image, sigma, mode="nearest")
    image = _zoom_to(image, shape, image_order)
    masks = {
        name: _zoom_to(m.astype(np.float32), shape, 1) > 0.5 for name, m in record.masks.items()
    }
    new_spacing = (spacing[0] / zoom[0], spacing[1] / zoom[1])
    return record.replace(
        image=image.astype(np.float32, copy=False),
        masks=masks,
        pixel_spacing_mm=new_spacing,
        geometry=replace(record.geometry, zoom=zoom),
    )


def _zoom_to(array: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resample so that pixel *edges* align (``grid_mode``): the zoom is exactly new/old."""
    factors = (shape[0] / array.shape[0], shape[1] / array.shape[1])
    out = ndi.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    assert out.shape == shape, (out.shape, shape)
    return out


def normalise_intensity(
    image: np.ndarray, clip_percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Clip to the image's own percentiles, then z-score (float32; a flat image gives zeros)."""
    image = image.astype(np.float32, copy=False)
    low, high = np.percentile(image, clip_percentiles)
    clipped = np.clip(image, low, high)
    mean, std = float(clipped.mean()), float(clipped.std())
    return ((clipped - mean) / (std if std > 1e-6 else 1.0)).astype(np.float32)


def crop_box_at(
    centre: tuple[float, float], size: int, offset: tuple[int, int] = (0, 0)
) -> tuple[int, int, int, int]:
    """The (row0, row1, col0, col1) square of side ``size`` centred on ``centre`` + ``offset``.

    The centre is rounded half up, so an even crop has ``size // 2`` pixels before the centre
    pixel; a cached context region and any crop taken from it therefore share the same origin.
    """
    row = math.floor(centre[0] + 0.5) + int(offset[0]) - size // 2
    col = math.floor(centre[1] + 0.5) + int(offset[1]) - size // 2
    return row, row + size, col, col + size


def crop_padded(
    array: np.ndarray, box: tuple[int, int, int, int], pad_value: float | bool = 0
) -> np.ndarray:
    """``array[..., row0:row1, col0:col1]``, padded with ``pad_value`` outside the array."""
    r0, r1, c0, c1 = box
    rows, cols = array.shape[-2:]
    out = np.full((*array.shape[:-2], r1 - r0, c1 - c0), pad_value, dtype=array.dtype)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    if sr0 < sr1 and sc0 < sc1:
        out[..., sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = array[..., sr0:sr1, sc0:sc1]
    return out


def random_offset(jitter_px: int, rng: np.random.Generator) -> tuple[int, int]:
    """A uniform integer offset in [-jitter_px, jitter_px] per axis."""
    if jitter_px <= 0:
        return 0, 0
    row, col = rng.integers(-jitter_px, jitter_px + 1, size=2)
    return int(row), int(col)


def preprocess_record(
    record: SliceRecord,
    plan: PreprocessPlan,
    *,
    centre: Centre = "heart",
    offset: tuple[int, int] = (0, 0),
    size: int | None = None,
) -> SliceRecord:
    """Resample, normalise and crop one record; geometry gets ``zoom`` and ``crop_box``.

    ``centre="heart"`` centres on the labelled structures (falling back to the image centre for
    a record without masks); ``centre="image"`` is the inference mode. ``offset`` moves the crop
    (training jitter, see :func:`random_offset`); ``size`` overrides ``plan.crop_size``.
    """
    prepared = resample_and_normalise(record, plan)
    middle = heart_centre(prepared) if centre == "heart" else None
    box = crop_box_at(middle or image_centre(prepared.image.shape), size or plan.crop_size, offset)
    return crop_record(prepared, box)


def with_spacing(record: SliceRecord, spacing_mm: tuple[float, float] | None) -> SliceRecord:
    """The record with ``spacing_mm`` where it has no spacing of its own (else unchanged)."""
    if record.pixel_spacing_mm is not None or spacing_mm is None:
        return record
    spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
    return record.replace(
        pixel_spacing_mm=spacing, geometry=replace(record.geometry, pixel_spacing_mm=spacing)
    )


def resample_and_normalise(record: SliceRecord, plan: PreprocessPlan) -> SliceRecord:
    """The first two steps of :func:`preprocess_record`: the whole image, before the crop."""
    record = with_spacing(record, plan.assumed_spacing_mm)
    resampled = resample_record(record, plan.target_spacing_mm, image_order=plan.image_order)
    return resampled.replace(image=normalise_intensity(resampled.image, plan.clip_percentiles))


def crop_record(prepared: SliceRecord, box: tuple[int, int, int, int]) -> SliceRecord:
    """The last step of :func:`preprocess_record`: crop a resampled, normalised record to
    ``box``, padding the image with its darkest value and the masks with background."""
    image = prepared.image
    return prepared.replace(
        image=crop_padded(image, box, float(image.min())),
        masks={name: crop_padded(mask, box, False) for name, mask in prepared.masks.items()},
        geometry=replace(prepared.geometry, crop_box=box),
    )


def stack_masks(
    record: SliceRecord, structures: Sequence[str] = STRUCTURES
) -> tuple[np.ndarray, np.ndarray]:
    """Masks as one uint8 (C, H, W) array in ``structures`` order, and which are labelled (C,).

    An unlabelled structure gives an all-zero channel with ``labelled=False``: the loss must
    ignore it rather than learn "absent".
    """
    shape = record.image.shape
    masks = np.zeros((len(structures), *shape), np.uint8)
    labelled = np.zeros(len(structures), bool)
    for channel, name in enumerate(structures):
        if name in record.masks:
            masks[channel] = record.masks[name]
            labelled[channel] = True
    return masks, labelled


def to_source_grid(prediction: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map a crop-shaped prediction (..., S, S), e.g. probabilities, back onto the source image.

    Pastes it into the resampled image at ``geometry.crop_box`` (zero elsewhere) and resamples
    linearly to ``geometry.original_shape``; threshold the result (> 0.5) for masks.
    """
    if geometry.crop_box is None:
        raise ValueError("geometry has no crop_box: the array was not cropped by preprocess")
    rows, cols = geometry.original_shape
    shape = (round(rows * geometry.zoom[0]), round(cols * geometry.zoom[1]))
    r0, r1, c0, c1 = geometry.crop_box
    canvas = np.zeros((*prediction.shape[:-2], *shape), np.float32)
    # The inverse crop: the canvas seen from the crop's frame.
    inverse = (-r0, shape[0] - r0, -c0, shape[1] - c0)
    canvas[...] = crop_padded(prediction.astype(np.float32), inverse, 0.0)
    if shape == (rows, cols):
        return canvas
    lead = canvas.reshape(-1, *shape)
    return np.stack([_zoom_to(a, (rows, cols), 1) for a in lead]).reshape(
        *prediction.shape[:-2], rows, cols
    )


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------

CACHE_IMAGES, CACHE_MASKS, CACHE_LABELLED, CACHE_INDEX = (
    "images.npy",
    "masks.npy",
    "labelled.npy",
    "index.json",
)


def _file_stamp(path: str) -> list[Any] | None:
    try:
        status = Path(path).stat()
    except (OSError, ValueError):
        return None
    if not Path(path).is_file():
        return None
    return [str(Path(path).resolve()), status.st_size, status.st_mtime_ns]


def _entry(record: SliceRecord) -> dict[str, Any]:
    """The metadata a cache stores per record (and hashes into its key)."""
    return {
        "key": record.key,
        "patient_id": record.patient_id,
        "source": record.source,
        "slice_index": record.slice_index,
        "phase_index": record.phase_index,
        "phase": record.phase,
        "group": record.group,
        "pixel_spacing_mm": record.pixel_spacing_mm,
        "original_shape": list(record.image.shape),
        "volume_index": record.geometry.volume_index,
        "structures": list(record.structures),
    }


def cache_key(
    records: Sequence[SliceRecord], plan: PreprocessPlan, centre: Centre = "heart"
) -> str:
    """A hash of the sources (path, size, mtime), record metadata, the plan and the version.

    A record whose source is not a file (a phantom made in memory) contributes a hash of its
    arrays instead, so its cache still follows its content.
    """
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {"version": PREPROCESS_VERSION, "plan": plan.identity(), "centre": centre},
            sort_keys=True,
        ).encode()
    )
    for record in records:
        stamps = [_file_stamp(p) for p in (record.source, *record.annotation_sources)]
        digest.update(json.dumps([_entry(record), stamps], sort_keys=True, default=str).encode())
        if stamps[0] is None:
            digest.update(np.ascontiguousarray(record.image).tobytes())
            for name in sorted(record.masks):
                digest.update(name.encode())
                digest.update(np.packbits(record.masks[name]).tobytes())
    return digest.hexdigest()


@dataclass
class Batch:
    """A training batch as torch tensors: images (B,1,S,S) float32, masks (B,C,S,S) float32,
    labelled (B,C) bool, indices (B,) int64 (positions in the cache)."""

    images: torch.Tensor
    masks: torch.Tensor
    labelled: torch.Tensor
    indices: torch.Tensor


class CachedSlices:
    """Preprocessed context regions of a dataset, memory-mapped from one cache folder.

    ``images`` is (N, R, R) float32 and ``masks`` (N, C, R, R) uint8 with R the plan's
    ``context_size``; ``labelled`` is (N, C) bool; ``entries`` holds each record's metadata
    and ``context_box`` (the region's box in resampled pixels). A crop with offset (dr, dc) is
    ``[J + dr : J + dr + S]`` per axis, J the jitter and S the crop size.
    """

    def __init__(self, path: str | Path, *, in_memory: bool = False) -> None:
        self._open(Path(path), in_memory)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started by "spawn" reopen the memory maps instead of copying them.
        return {"path": str(self.path), "in_memory": self.in_memory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._open(Path(state["path"]), state["in_memory"])

    def _open(self, path: Path, in_memory: bool) -> None:
        self.path = path
        self.in_memory = in_memory
        try:
            index = json.loads((self.path / CACHE_INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InvalidInputError(self.path, f"not a preprocessing cache ({error})") from None
        self.key: str = index["key"]
        self.centre: str = index["centre"]
        self.plan = PreprocessPlan.from_dict(index["plan"])
        self.entries: list[dict[str, Any]] = index["entries"]
        mode = None if in_memory else "r"
        self.images: np.ndarray = np.load(self.path / CACHE_IMAGES, mmap_mode=mode)
        self.masks: np.ndarray = np.load(self.path / CACHE_MASKS, mmap_mode=mode)
        self.labelled: np.ndarray = np.load(self.path / CACHE_LABELLED)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def crop_size(self) -> int:
        return self.plan.crop_size

    @property
    def jitter_px(self) -> int:
        return self.plan.jitter_px

    @property
    def margin_px(self) -> int:
        return self.plan.margin_px

    @property
    def structures(self) -> tuple[str, ...]:
        return self.plan.structures

    @property
    def patient_ids(self) -> list[str]:
        return [entry["patient_id"] for entry in self.entries]

    def indices_of(self, patients: Sequence[str]) -> np.ndarray:
        """Cache positions of the given patients' slices (for patient-level splits)."""
        wanted = set(patients)
        return np.array(
            [i for i, entry in enumerate(self.entries) if entry["patient_id"] in wanted], np.int64
        )

    def crop_box(self, index: int, offset: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
        """The crop's box in resampled pixels of the source record (for :class:`Geometry`)."""
        r0, _, c0, _ = self.entries[index]["context_box"]
        row, col = r0 + self.margin_px + offset[0], c0 + self.margin_px + offset[1]
        return row, row + self.crop_size, col, col + self.crop_size

    def geometry(self, index: int, offset: tuple[int, int] = (0, 0)) -> Geometry:
        entry = self.entries[index]
        spacing = entry["pixel_spacing_mm"]
        return Geometry(
            original_shape=tuple(entry["original_shape"]),
            pixel_spacing_mm=tuple(spacing) if spacing is not None else None,
            volume_index=entry["volume_index"],
            zoom=tuple(entry["zoom"]),
            crop_box=self.crop_box(index, offset),
        )

    def crop(self, index: int, offset: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        """The (S, S) float32 image and (C, S, S) uint8 masks of one slice at ``offset``."""
        self._check_offset(offset)
        r, c = self.margin_px + offset[0], self.margin_px + offset[1]
        s = self.crop_size
        return (
            np.asarray(self.images[index, r : r + s, c : c + s]),
            np.asarray(self.masks[index, :, r : r + s, c : c + s]),
        )

    def _check_offset(self, offset: tuple[int, int]) -> None:
        if max(abs(offset[0]), abs(offset[1])) > self.margin_px:
            raise ValueError(f"offset {offset} is beyond the cached margin of {self.margin_px} px")

    def random_offsets(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` uniform (row, col) offsets within the cached jitter, as an (n, 2) array."""
        j = self.jitter_px
        return rng.integers(-j, j + 1, size=(count, 2)) if j else np.zeros((count, 2), np.int64)

    def far_offsets(self, offsets: np.ndarray, share: float, rng: np.random.Generator) -> None:
        """Move a ``share`` of ``offsets`` (in place) anywhere within the plan's reach: crops
        with the heart at their edge or half out of them, and what lies around it."""
        reach = self.plan.reach_px
        if share <= 0 or reach <= 0 or not len(offsets):
            return
        far = rng.random(len(offsets)) < share
        offsets[far] = rng.integers(-reach, reach + 1, size=(int(far.sum()), 2))

    def batch(
        self, indices: Sequence[int] | np.ndarray, offsets: np.ndarray | None = None
    ) -> Batch:
        """Gather a batch by slicing the memory maps (no decoding, no resampling)."""
        import torch

        indices = np.asarray(indices, np.int64)
        if offsets is None:
            offsets = np.zeros((len(indices), 2), np.int64)
        s, j, channels = self.crop_size, self.margin_px, self.masks.shape[1]
        images = np.empty((len(indices), 1, s, s), np.float32)
        masks = np.empty((len(indices), channels, s, s), np.uint8)
        if np.abs(offsets).max(initial=0) > j:
            raise ValueError(f"an offset is beyond the cached margin of {j} px")
        for k, (index, (dr, dc)) in enumerate(zip(indices, offsets, strict=True)):
            r, c = j + dr, j + dc
            images[k, 0] = self.images[index, r : r + s, c : c + s]
            masks[k] = self.masks[index, :, r : r + s, c : c + s]
        return Batch(
            images=torch.from_numpy(images),
            masks=torch.from_numpy(masks).float(),
            labelled=torch.from_numpy(self.labelled[indices]),
            indices=torch.from_numpy(indices),
        )

    def batches(
        self,
        batch_size: int,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        shuffle: bool = True,
        jitter: bool = True,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """One epoch of batches; order and offsets depend only on (seed, epoch)."""
        order = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64)
        rng = np.random.default_rng([seed, epoch])
        if shuffle:
            order = rng.permutation(order)
        offsets = (
            self.random_offsets(len(order), rng) if jitter else np.zeros((len(order), 2), np.int64)
        )
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size], offsets[start : start + batch_size])


def build_cache(
    records: Sequence[SliceRecord],
    plan: PreprocessPlan,
    cache_dir: str | Path,
    *,
    centre: Centre = "heart",
    rebuild: bool = False,
    in_memory: bool = False,
    progress: ProgressCallback | None = None,
) -> CachedSlices:
    """Preprocess every record once into ``cache_dir/<key>/`` and open it; reuse it if present.

    The folder is built beside its final place and renamed when complete
    (:func:`lvseg.atomic.atomic_directory`), so a crash never leaves a half cache. The
    stored region is ``plan.context_size`` square around the heart, so every jittered crop of
    every epoch is a slice of it.
    """
    records = list(records)
    if not records:
        raise InvalidInputError(None, "cannot cache an empty dataset")
    key = cache_key(records, plan, centre)
    folder = Path(cache_dir) / key[:24]
    if not rebuild and (folder / CACHE_INDEX).is_file():
        try:
            cached = CachedSlices(folder, in_memory=in_memory)
        except (InvalidInputError, OSError, ValueError, KeyError):
            cached = None
        if cached is not None and cached.key == key:
            return cached
    size, channels = plan.context_size, len(plan.structures)
    with atomic_directory(folder, overwrite=True) as temporary:
        images = np.lib.format.open_memmap(
            temporary / CACHE_IMAGES, mode="w+", dtype=np.float32, shape=(len(records), size, size)
        )
        masks = np.lib.format.open_memmap(
            temporary / CACHE_MASKS,
            mode="w+",
            dtype=np.uint8,
            shape=(len(records), channels, size, size),
        )
        labelled = np.zeros((len(records), channels), bool)
        entries = []
        for i, record in enumerate(track(records, "preprocess"), start=0):
            region = preprocess_record(record, plan, centre=centre, size=size)
            images[i] = region.image
            masks[i], labelled[i] = stack_masks(region, plan.structures)
            entry = _entry(record)
            entry["zoom"] = list(region.geometry.zoom)
            entry["resampled_spacing_mm"] = region.pixel_spacing_mm
            entry["context_box"] = list(region.geometry.crop_box or ())
            entries.append(entry)
            if progress is not None:
                progress(i + 1, len(records))
        images.flush()
        masks.flush()
        del images, masks
        np.save(temporary / CACHE_LABELLED, labelled)
        index = {
            "key": key,
            "version": PREPROCESS_VERSION,
            "centre": centre,
            "plan": plan.to_dict(),
            "entries": entries,
        }
        (temporary / CACHE_INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
    return CachedSlices(folder, in_memory=in_memory)


class CachedSliceDataset:
    """A map-style (torch ``Dataset``-compatible) view of a cache: (image, masks, index).

    ``image`` is a [1, S, S] float32 tensor, ``masks`` [C, S, S] float32 (0/1), ``index`` the
    position in the cache (``cache.labelled[index]`` says which channels are labelled). With
    ``jitter`` the crop moves by a random offset drawn from (seed, epoch, index), so an item is
    the same whatever the worker or order that asks for it; call :meth:`set_epoch` each epoch.
    """

    def __init__(
        self,
        cache: CachedSlices,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        jitter: bool = True,
        seed: int = 0,
    ) -> None:
        self.cache = cache
        self.indices = np.arange(len(cache)) if indices is None else np.asarray(indices, np.int64)
        self.jitter = jitter
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def offset(self, item: int) -> tuple[int, int]:
        index = int(self.indices[item])
        if not self.jitter:
            return 0, 0
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return random_offset(self.cache.jitter_px, rng)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        import torch

        index = int(self.indices[item])
        image, masks = self.cache.crop(index, self.offset(item))
        return (
            torch.from_numpy(np.ascontiguousarray(image))[None],
            torch.from_numpy(np.ascontiguousarray(masks)).float(),
            index,
        )
