"""Robustness to scanners lvseg never saw: held-out Sunnybrook patients under controlled shifts.

lvseg is measured on other sites and vendors that are not in the shared data. This benchmark is
the proxy we can run: the cross-validation runs of ``benchmarks/sunnybrook_cv.py`` (``--runs
DIR``, kept as ``DIR/RECIPE/lvnet-foldK``), each scored on the patients its fold held out, first
as they are and then under one controlled shift at a time, through the one inference path
(:class:`lvseg.segment.Segmenter`, the located crop, what ``lvseg predict`` does):

- **contrast**: gamma 0.5 and 2.0, and a sigmoid window (another vendor's or sequence's look);
- **bias field**: a smooth coil shading, 0.6x to 1.6x across the field of view along an axis
  (to 0.5x-1.9x corner to corner where its direction is diagonal);
- **noise**: Gaussian noise of 8% of the bright signal, taken in magnitude (Rician-like);
- **resolution**: the image and its mask resampled to 2.0 mm and to 1.0 mm pixels (the source
  is 1.33 mm), the spacing saying so, as a coarser or finer scanner would store them;
- **slice thickness**: each slice mixed with its neighbours at the same phase (0.6 / 0.2 / 0.2),
  the partial volume of a thicker slice;
- **orientation**: in-plane rotation by 45 and 90 degrees, and the image mirrored (axis
  conventions differ between DICOM viewers and NIfTI converters);
- **placement**: the heart 50 px off-centre, and a wider field of view (the image padded to
  1.5x, the heart towards one corner);
- **single phase**: only the end-systolic frames of each patient (``predict`` given one phase);
  **single slice**: every frame alone, with no stack to locate the heart in.

and, where the fold held out one of the 5 patients of ``sunnybrook-dicom``, the raw DICOM cine
with expert contours (the same patients in mm, read by the DICOM reader).

Then the **phantom's acquisition variants** (``--phantom N`` synthetic patients, ED and ES; 0
skips them): each patient's anatomy seen through one fixed acquisition at a time (the standard
or a turned view, low or high noise, a blurred or a sharp k-space, 1.0 or 2.0 mm pixels, 10 mm
slices, another contrast curve, a circular field of view, the heart 100 mm off-centre; see
:data:`lvseg.data.phantom.ACQUISITION`), and the same patients as drawn given one phase (ES) or
one slice at a time. No model is trained on the phantom, so its figures
measure synthetic-to-real distance as much as robustness; the drops are from the same patients
as drawn, which is what isolates the acquisition.

Per recipe it prints the per-slice Dice and its drop from the unshifted figure, and the
localisation misses: slices whose crop holds less than half of the reference LV.

Run from the project root; it scores the runs ``sunnybrook_cv.py --runs DIR`` trained, and
trains (as that script does) the recipe folds it does not find there::

    .venv/bin/python -m benchmarks.domain_shift [--runs DIR] [--recipes baseline,robust]
        [--folds 0,1] [--shifts NAME,...] [--phantom 6] [--tta] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch

from benchmarks.sunnybrook_cv import config_for
from lvseg import layout
from lvseg.data.folders import SUNNYBROOK_SPACING_MM
from lvseg.data.load import labelled_dataset
from lvseg.data.phantom import generate_patient, patient_records
from lvseg.data.records import ES, LV, SliceRecord
from lvseg.evaluate.run import open_scored_model
from lvseg.segment.segmenter import Segmenter
from lvseg.train.engine import train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PNG, DICOM = DATA / "sunnybrook-png", DATA / "sunnybrook-dicom"
SOURCE_MM = SUNNYBROOK_SPACING_MM[0]
"""The spacing the folder reader gives the Sunnybrook PNGs (where the resolution shifts start)."""

Shift = Callable[[list[SliceRecord]], list[SliceRecord]]


# ---- record-level helpers ------------------------------------------------------------------


def _unit(image: np.ndarray) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low if high > low else 1.0)


def _intensity(change: Callable[[np.ndarray, int], np.ndarray]) -> Shift:
    """A shift of the image values only (masks and grid unchanged)."""

    def shift(records: list[SliceRecord]) -> list[SliceRecord]:
        return [
            r.replace(image=change(r.image.astype(np.float32), i).astype(np.float32))
            for i, r in enumerate(records)
        ]

    return shift


def _geometric(change: Callable[[np.ndarray, float, int], np.ndarray], spacing=None) -> Shift:
    """A shift of image and masks alike (masks moved as floats, thresholded at 0.5)."""

    def shift(records: list[SliceRecord]) -> list[SliceRecord]:
        out = []
        for i, r in enumerate(records):
            image = change(r.image.astype(np.float32), float(r.image.min()), i)
            masks = {k: change(m.astype(np.float32), 0.0, i) > 0.5 for k, m in r.masks.items()}
            new_spacing = spacing(r) if spacing else r.pixel_spacing_mm
            out.append(
                r.replace(
                    image=image,
                    masks=masks,
                    pixel_spacing_mm=new_spacing,
                    geometry=type(r.geometry)(
                        original_shape=image.shape, pixel_spacing_mm=new_spacing
                    ),
                )
            )
        return out

    return shift


def _resampled(target_mm: float) -> Shift:
    def change(array: np.ndarray, fill: float, _i: int) -> np.ndarray:
        zoom = SOURCE_MM / target_mm
        if zoom < 1:
            array = ndi.gaussian_filter(array, (1 / zoom - 1) / 2)
        return ndi.zoom(array, zoom, order=1, mode="nearest", grid_mode=True)

    def spacing(record: SliceRecord) -> tuple[float, float]:
        rows = record.image.shape[0]
        new_rows = round(rows * SOURCE_MM / target_mm)
        return (SOURCE_MM * rows / new_rows,) * 2

    return _geometric(change, spacing)


def _bias(image: np.ndarray, i: int) -> np.ndarray:
    rows, cols = image.shape
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : cols * 1j]
    angle = 2 * np.pi * ((i * 0.618) % 1)  # a different direction per slice, fixed
    field = np.exp(0.665 * (x * np.cos(angle) + y * np.sin(angle)) / np.sqrt(2))
    return image * field


def _noise(image: np.ndarray, i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    sigma = 0.08 * float(np.percentile(image, 99))
    real = image + rng.normal(0, sigma, image.shape)
    return np.hypot(real, rng.normal(0, sigma, image.shape))


def _thick(records: list[SliceRecord]) -> list[SliceRecord]:
    """Each slice mixed with its neighbours at the same phase, where they were labelled too."""
    where = {(r.patient_id, r.phase_index, r.slice_index): r for r in records}
    out = []
    for r in records:
        mixed, weight = 0.6 * r.image.astype(np.float32), 0.6
        for step in (-1, 1):
            other = where.get((r.patient_id, r.phase_index, (r.slice_index or 0) + step))
            if other is not None and other.image.shape == r.image.shape:
                mixed, weight = mixed + 0.2 * other.image, weight + 0.2
        out.append(r.replace(image=(mixed / weight).astype(np.float32)))
    return out


def _pad_corner(array: np.ndarray, fill: float, _i: int) -> np.ndarray:
    rows, cols = array.shape
    out = np.full((rows * 3 // 2, cols * 3 // 2), fill, np.float32)
    out[rows // 2 :, cols // 2 :] = array  # the heart towards the lower right corner
    return out


SHIFTS: dict[str, Shift] = {
    "none": lambda records: records,
    "gamma 0.5": _intensity(lambda x, _i: _unit(x) ** 0.5 * 255),
    "gamma 2.0": _intensity(lambda x, _i: _unit(x) ** 2.0 * 255),
    "sigmoid window": _intensity(lambda x, _i: 255 / (1 + np.exp(-(_unit(x) - 0.35) * 10))),
    "bias field": _intensity(_bias),
    "noise 8%": _intensity(_noise),
    "2.0 mm pixels": _resampled(2.0),
    "1.0 mm pixels": _resampled(1.0),
    "thick slices": _thick,
    "rotated 45°": _geometric(
        lambda a, fill, _i: ndi.rotate(a, 45, reshape=False, order=1, cval=fill)
    ),
    "rotated 90°": _geometric(lambda a, fill, _i: np.rot90(a).copy()),
    "mirrored": _geometric(lambda a, fill, _i: a[:, ::-1].copy()),
    "heart off-centre": _geometric(lambda a, fill, _i: ndi.shift(a, (50, -50), order=0, cval=fill)),
    "wide field of view": _geometric(_pad_corner),
    "single phase (ES)": lambda records: [r for r in records if r.phase == ES],
    "single slice": lambda records: [r.replace(slice_index=None) for r in records],
}


PHANTOM_VARIANTS: dict[str, dict] = {
    "as drawn": {},
    "standard view": {"rotation": 0.0},
    "turned 90°": {"rotation": math.pi / 2},
    "low noise": {"noise": 0.01},
    "high noise": {"noise": 0.12},
    "blurred (half of k-space)": {"k_fraction": (0.5, 0.5)},
    "sharp (all of k-space)": {"k_fraction": (1.0, 1.0), "k_taper": 0.0},
    "1.0 mm pixels": {"spacing": 1.0},
    "2.0 mm pixels": {"spacing": 2.0},
    "10 mm slices": {"thickness": 10.0},
    "gamma 0.75": {"gamma": 0.75},
    "gamma 1.3": {"gamma": 1.3},
    "circular field of view": {"fov_kind": "circle"},
    "heart far off-centre": {"heart_offset_mm": (70.0, -70.0)},
}
"""Fixed acquisitions of the phantom (``generate_patient(acquisition=...)``); the drawn ranges:
noise 0.015-0.06, 50-95% of k-space, 1.2-2.0 mm pixels, 6-10 mm slices, gamma 0.75-1.3, the
heart within about 20 mm of the image centre."""
PHANTOM_SELECTIONS = ("single phase (ES)", "single slice")
"""Shifts of :data:`SHIFTS` also applied to the phantom as drawn."""


def phantom_records(patients: int, acquisition: dict) -> list[SliceRecord]:
    records: list[SliceRecord] = []
    for index in range(patients):
        patient = generate_patient(index, phases="ed_es", acquisition=acquisition)
        records.extend(patient_records(patient, "ed_es"))
    return records


# ---- scoring -------------------------------------------------------------------------------


def dice(predicted: np.ndarray, reference: np.ndarray) -> float:
    total = int(predicted.sum()) + int(reference.sum())
    return 1.0 if total == 0 else 2.0 * int((predicted & reference).sum()) / total


def score(segmenter: Segmenter, records: list[SliceRecord]) -> tuple[list[float], int]:
    """Per-slice Dice on each record's own grid, and the slices whose crop missed the heart."""
    dices, misses = [], 0
    for result in segmenter.segment(records):
        reference = np.asarray(result.record.masks[LV], bool)
        dices.append(dice(result.mask, reference))
        zoom = result.crop.geometry.zoom
        inside = int(result.crop.masks[LV].sum())
        if reference.any() and inside < 0.5 * reference.sum() * zoom[0] * zoom[1]:
            misses += 1
    return dices, misses


def tally(cells: dict[str, dict], name: str, dices: list[float], misses: int) -> None:
    """Add one model's scores under one shift to a recipe's cells."""
    cell = cells.setdefault(name, {"dice": [], "misses": 0})
    cell["dice"] += dices
    cell["misses"] += misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", type=Path, default=Path("cv"), help="sunnybrook_cv.py's --runs (default: cv)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="for runs it must train")
    parser.add_argument("--recipes", default="baseline,robust")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--shifts", default=",".join(SHIFTS), help="which shifts to run")
    parser.add_argument(
        "--phantom", type=int, default=6, help="synthetic patients per acquisition (0: none)"
    )
    parser.add_argument("--tta", action="store_true", help="score with test-time augmentation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not PNG.is_dir():
        sys.exit(f"error: {PNG}: no Sunnybrook PNG data (see ../shared/data/README.md)")
    torch.set_num_threads(args.threads)
    shifts = args.shifts.split(",")
    unknown = [s for s in shifts if s not in SHIFTS]
    if unknown:
        sys.exit(f"error: unknown shift(s) {unknown}; choose from {', '.join(SHIFTS)}")
    png = labelled_dataset(PNG)
    dicom = labelled_dataset(DICOM) if DICOM.is_dir() else None
    recipes = args.recipes.split(",")
    folds = [int(f) for f in args.folds.split(",")]
    found: dict[str, dict[str, dict]] = {r: {} for r in recipes}
    segmenters: list[tuple[str, Segmenter]] = []
    for recipe in recipes:
        for fold in folds:
            run = args.runs / recipe / f"lvnet-fold{fold}"
            checkpoint = layout.checkpoint_path(run, layout.LAST_CHECKPOINT)
            if not checkpoint.is_file():
                print(f"{run}: not found, training it", flush=True)
                settings = argparse.Namespace(
                    seed=0, data=PNG, threads=args.threads, epochs=args.epochs
                )
                train(config_for(settings, recipe, "lvnet", fold), run, overwrite=run.exists())
            model = open_scored_model(checkpoint)
            held_out = list(model.split.val)
            segmenter = Segmenter(model.network, model.plan, tta=args.tta)
            segmenters.append((recipe, segmenter))
            records = png.subset(held_out).records
            names = list(shifts)
            dicom_here = [p for p in held_out if dicom and p in dicom.patients]
            if dicom_here:
                names.append("DICOM cine (mm)")
            for name in names:
                start = time.perf_counter()
                shifted = (
                    dicom.subset(dicom_here).records
                    if name == "DICOM cine (mm)"
                    else SHIFTS[name](records)
                )
                dices, misses = score(segmenter, shifted)
                tally(found[recipe], name, dices, misses)
                print(
                    f"{recipe} fold {fold} {name}: Dice {statistics.fmean(dices):.4f} on "
                    f"{len(dices)} slices, {misses} missed ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    phantom: dict[str, dict[str, dict]] = {r: {} for r in recipes}
    variants = [(name, acquisition, None) for name, acquisition in PHANTOM_VARIANTS.items()]
    variants += [(name, {}, SHIFTS[name]) for name in PHANTOM_SELECTIONS]
    for name, acquisition, selection in variants if args.phantom > 0 else ():
        start = time.perf_counter()
        records = phantom_records(args.phantom, acquisition)
        if selection is not None:
            records = selection(records)
        for recipe, segmenter in segmenters:
            tally(phantom[recipe], name, *score(segmenter, records))
        print(
            f"phantom {name}: {len(records)} slices, "
            + ", ".join(f"{r} {statistics.fmean(phantom[r][name]['dice']):.4f}" for r in recipes)
            + f" ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    print()
    print_table(
        f"Domain shift: CV folds {args.folds} held-out patients, LVNet, located crop"
        + (", TTA" if args.tta else "")
        + " (per-slice Dice; drop from the unshifted figure; slices whose crop missed the LV)",
        found,
        recipes,
        "none",
        ("DICOM cine (mm)",),
    )
    if args.phantom > 0:
        print()
        print_table(
            f"Phantom acquisition variants: {args.phantom} synthetic patients, ED and ES, scored "
            f"by each model of folds {args.folds} (drop from the same patients as drawn)",
            phantom,
            recipes,
            "as drawn",
            (),
        )
    if args.json:
        results = {"shifts": found, "phantom": phantom}
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def print_table(
    title: str,
    found: dict[str, dict[str, dict]],
    recipes: list[str],
    reference: str,
    no_drop: tuple[str, ...],
) -> None:
    """One markdown table: per shift, each recipe's Dice, drop from ``reference`` and misses."""
    print(title)
    print()
    print("| shift | slices | " + " | ".join(f"{r} Dice | drop | missed" for r in recipes) + " |")
    print("|---|---|" + "---|---|---|" * len(recipes))
    names = list(dict.fromkeys(name for r in recipes for name in found[r]))
    for name in names:
        cells = []
        for recipe in recipes:
            cell = found[recipe].get(name)
            if cell is None:
                cells.append("- | - | -")
                continue
            mean = statistics.fmean(cell["dice"])
            base = (
                statistics.fmean(found[recipe][reference]["dice"])
                if reference in found[recipe]
                else mean
            )
            drop = "" if name == reference or name in no_drop else f"{mean - base:+.4f}"
            cells.append(f"{mean:.4f} | {drop} | {cell['misses']}")
        slices = len(found[recipes[0]].get(name, {"dice": []})["dice"])
        print(f"| {name} | {slices} | " + " | ".join(cells) + " |")
    for recipe in recipes:
        cells = found[recipe]
        if reference not in cells or len(cells) < 2:
            continue
        base = statistics.fmean(cells[reference]["dice"])
        drops = [
            (statistics.fmean(c["dice"]) - base, n)
            for n, c in cells.items()
            if n != reference and n not in no_drop
        ]
        if not drops:
            continue
        drop, name = min(drops)
        print(f"\n{recipe}: largest drop {drop:+.4f} ({name})", end="")
    print()


if __name__ == "__main__":
    main()
