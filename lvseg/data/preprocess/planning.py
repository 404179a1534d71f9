"""Plan preprocessing from the data, as nnU-Net does: measure a dataset (:func:`fingerprint`),
then derive the target spacing, crop, jitter and normalisation from it
(:func:`plan_preprocessing`). The plan is data (``to_dict``/``from_dict``), saved with every run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np

from lvseg.data.preprocess.regions import bounding_box, heart_centre, heart_mask, image_centre
from lvseg.data.records import MASK_STRUCTURES, SliceRecord
from lvseg.errors import InvalidInputError
from lvseg.progress import track

PREPROCESS_VERSION = 1
"""Bump when the arrays produced for a given plan change; it is part of every cache key."""

FINGERPRINT_VERSION = 1

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each record of a long loop."""

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


def _mm_and_px() -> tuple[list[float], list[float]]:
    """Values measured in mm (records with a spacing), and in px (the others)."""
    return [], []


@dataclass
class _Tally:
    """What :func:`fingerprint` gathers record by record, before it summarises.

    Each length or area goes to the mm list of its pair where the record has a spacing, to the
    px list otherwise. One generator draws every sample, so the numbers are reproducible.
    """

    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    whole_samples: list[np.ndarray] = field(default_factory=list)
    foreground_samples: list[np.ndarray] = field(default_factory=list)
    lows: list[float] = field(default_factory=list)
    highs: list[float] = field(default_factory=list)
    shapes: dict[str, int] = field(default_factory=dict)
    areas: dict[str, tuple[list[float], list[float]]] = field(
        default_factory=lambda: {s: _mm_and_px() for s in MASK_STRUCTURES}
    )
    extent: tuple[list[float], list[float]] = field(default_factory=_mm_and_px)
    offset: tuple[list[float], list[float]] = field(default_factory=_mm_and_px)
    centre_extent: tuple[list[float], list[float]] = field(default_factory=_mm_and_px)

    def _sample(self, values: np.ndarray) -> np.ndarray:
        return values[self.rng.integers(0, values.size, min(_SAMPLES_PER_IMAGE, values.size))]

    def add(self, record: SliceRecord) -> None:
        image = record.image
        shape = f"{image.shape[0]}x{image.shape[1]}"
        self.shapes[shape] = self.shapes.get(shape, 0) + 1
        self.whole_samples.append(self._sample(image.reshape(-1)))
        low, high = np.percentile(image, [0.5, 99.5])
        self.lows.append(low)
        self.highs.append(high)
        spacing = record.pixel_spacing_mm
        unit = 1 if spacing is None else 0  # index into the (mm, px) pairs
        scale = (1.0, 1.0) if spacing is None else spacing
        for name, mask in record.masks.items():
            if name in self.areas:
                self.areas[name][unit].append(float(mask.sum()) * scale[0] * scale[1])
        heart = heart_mask(record)
        if heart is not None:
            self._add_heart(record, heart, unit, scale)

    def _add_heart(
        self, record: SliceRecord, heart: np.ndarray, unit: int, scale: tuple[float, float]
    ) -> None:
        self.foreground_samples.append(self._sample(record.image[heart]))
        r0, r1, c0, c1 = bounding_box(heart)
        self.extent[unit].append(max((r1 - r0) * scale[0], (c1 - c0) * scale[1]))
        centre = heart_centre(record)
        middle = image_centre(record.image.shape)
        assert centre is not None
        self.offset[unit].append(
            max(abs(centre[0] - middle[0]) * scale[0], abs(centre[1] - middle[1]) * scale[1])
        )
        # Half-sides of the smallest image-centred square holding the box, per axis.
        half_rows = max(middle[0] - (r0 - 0.5), (r1 - 0.5) - middle[0]) * scale[0]
        half_cols = max(middle[1] - (c0 - 0.5), (c1 - 0.5) - middle[1]) * scale[1]
        self.centre_extent[unit].append(2 * max(half_rows, half_cols))


def _counts(values: Sequence[str | None]) -> dict[str, int]:
    found: dict[str, int] = {}
    for value in values:
        found[str(value)] = found.get(str(value), 0) + 1
    return dict(sorted(found.items()))


def _pair(values: np.ndarray) -> tuple[float, float]:
    return float(values[0]), float(values[1])


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
    tally = _Tally()
    for done, record in enumerate(track(records, "fingerprint"), start=1):
        tally.add(record)
        if progress is not None:
            progress(done, len(records))
    spacings = np.array([r.pixel_spacing_mm for r in records if r.pixel_spacing_mm is not None])
    shapes = np.array([r.image.shape for r in records])
    foreground = tally.foreground_samples
    return Fingerprint(
        n_records=len(records),
        n_patients=len({r.patient_id for r in records}),
        group_counts=_counts([r.group for r in records]),
        phase_counts=_counts([r.phase for r in records]),
        structure_counts={s: sum(s in r.masks for r in records) for s in MASK_STRUCTURES},
        spacing_known=len(spacings),
        spacing_unknown=len(records) - len(spacings),
        spacing_median_mm=_pair(np.median(spacings, axis=0)) if len(spacings) else None,
        spacing_min_mm=_pair(spacings.min(axis=0)) if len(spacings) else None,
        spacing_max_mm=_pair(spacings.max(axis=0)) if len(spacings) else None,
        shape_counts=dict(sorted(tally.shapes.items(), key=lambda item: -item[1])),
        shape_median=(int(np.median(shapes[:, 0])), int(np.median(shapes[:, 1]))),
        intensity_image=Intensity.of(np.concatenate(tally.whole_samples)),
        intensity_foreground=Intensity.of(
            np.concatenate(foreground) if foreground else np.empty(0)
        ),
        per_image_low=Stats.of(tally.lows),
        per_image_high=Stats.of(tally.highs),
        area={s: Measured.of(*tally.areas[s]) for s in MASK_STRUCTURES if any(tally.areas[s])},
        heart_extent=Measured.of(*tally.extent),
        heart_offset=Measured.of(*tally.offset),
        centre_crop_extent=Measured.of(*tally.centre_extent),
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
    structures: tuple[str, ...] = MASK_STRUCTURES
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


def _target_spacing(
    fingerprint: Fingerprint, given: tuple[float, float] | None
) -> tuple[tuple[float, float] | None, list[str]]:
    """The spacing to resample to (the given one, else the median known one), and notes."""
    notes: list[str] = []
    target = given
    if target is None and fingerprint.spacing_median_mm is not None:
        target = fingerprint.spacing_median_mm
        notes.append(
            f"target spacing {target[0]:.3g} x {target[1]:.3g} mm: median "
            f"of {fingerprint.spacing_known} known spacings"
        )
    elif target is not None:
        target = (float(target[0]), float(target[1]))
        notes.append(f"target spacing {target} mm: given")
    else:
        notes.append("no record has a pixel spacing: images keep their pixel grid")
    if fingerprint.spacing_unknown and target is not None:
        notes.append(f"{fingerprint.spacing_unknown} records without spacing keep their grid")
    return target, notes


def _centre_crop_note(
    fingerprint: Fingerprint, crop: int, target: tuple[float, float] | None
) -> list[str]:
    """Whether an image-centred crop of ``crop`` px holds every labelled heart."""
    largest_centred = _in_target_px(fingerprint.centre_crop_extent, "max", target)
    if not largest_centred:
        return []
    holds = "holds every" if largest_centred <= crop else "does not hold every"
    return [
        f"an image-centred {crop} px crop {holds} labelled heart "
        f"(largest image-centred extent {largest_centred:.1f} px)"
    ]


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
    """
    target_spacing_mm, notes = _target_spacing(fingerprint, target_spacing_mm)
    extent = _in_target_px(fingerprint.heart_extent, "max", target_spacing_mm)
    if extent == 0.0:
        # No masks at all: fall back to the median image side.
        extent = float(min(fingerprint.shape_median)) / (1 + 2 * margin_fraction)
        notes.append("no labelled structure: crop from the median image size")
    # For the Sunnybrook PNGs (no spacing, 256x256; LV up to 62 px across; LV centre within
    # 16.5 px of the image centre for 95% of slices; 76 px image-centred extent at p95, 98 px at
    # most) this gives 62 x 1.3 + 2 x 16 = 112.6 -> 128 px and 16 px jitter, and a 128 px
    # centre crop holds every labelled LV.
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
    notes += _centre_crop_note(fingerprint, crop, target_spacing_mm)
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
