"""Dataset inspection: a summary of what a reader found, and a montage of slices with contours.

``summarise(dataset)`` gives a JSON-ready dict (what ``lvseg data inspect --json`` prints);
``write_montage(dataset, path)`` draws a grid of slices, spread over patients, with the contours of
every labelled structure overlaid, so a wrong orientation or a shifted mask is seen at a glance.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lvseg import atomic
from lvseg.data.records import LV, MASK_STRUCTURES, MYOCARDIUM, Dataset, SliceRecord

STRUCTURE_COLOURS = {"lv": "#ff3b30", "myocardium": "#34c759", "rv": "#0a84ff"}


def summarise(dataset: Dataset, intensity_sample: int = 64) -> dict[str, Any]:
    """Patients, slices, structures, phases, spacing and intensity of a dataset, as plain data.

    ``slices_per_structure`` counts the slices that label each structure (structures that no slice
    labels are left out, e.g. ``{"lv": 526}``). Intensities are pooled over an evenly spaced sample
    of ``intensity_sample`` slices, in source units.
    """
    by_patient = dataset.by_patient()
    structure_counts = Counter(name for record in dataset for name in record.structures)
    spacings = [r.pixel_spacing_mm for r in dataset if r.pixel_spacing_mm is not None]
    thickness = [r.slice_thickness_mm for r in dataset if r.slice_thickness_mm is not None]
    shapes = Counter(f"{r.image.shape[1]}x{r.image.shape[0]}" for r in dataset)
    step = max(1, len(dataset) // max(1, intensity_sample))
    pixels = (
        np.concatenate([r.image.ravel() for r in dataset.records[::step]]) if len(dataset) else []
    )
    return {
        "root": dataset.root,
        "format": dataset.format,
        "patients": len(by_patient),
        "slices": len(dataset),
        "slices_per_structure": {
            s: structure_counts[s] for s in MASK_STRUCTURES if structure_counts[s]
        },
        "phases": {
            "ED": sum(r.phase == "ED" for r in dataset),
            "ES": sum(r.phase == "ES" for r in dataset),
            "unknown": sum(r.phase is None for r in dataset),
        },
        "groups": dict(
            sorted(Counter(r[0].group or "unknown" for r in by_patient.values()).items())
        ),
        "image_sizes": dict(shapes.most_common()),
        "pixel_spacing_mm": _stats([s[0] for s in spacings])
        | {"unknown": len(dataset) - len(spacings)},
        "slice_thickness_mm": _stats(thickness),
        "intensity": _intensity(np.asarray(pixels, dtype=np.float64)),
        "per_patient": [
            {
                "patient": patient,
                "group": records[0].group,
                "slices": len(records),
                "slice_positions": len({r.slice_index for r in records}),
                "phases": sorted({r.phase or str(r.phase_index) for r in records}),
                "structures": {
                    s: sum(s in r.masks for r in records)
                    for s in MASK_STRUCTURES
                    if any(s in r.masks for r in records)
                },
            }
            for patient, records in by_patient.items()
        ],
        "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
    }


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "median": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    return {
        "min": round(float(array.min()), 4),
        "median": round(float(np.median(array)), 4),
        "max": round(float(array.max()), 4),
    }


def _intensity(pixels: np.ndarray) -> dict[str, float | None]:
    if pixels.size == 0:
        return {"min": None, "p1": None, "median": None, "p99": None, "max": None}
    p1, median, p99 = np.percentile(pixels, [1, 50, 99])
    return {
        "min": round(float(pixels.min()), 3),
        "p1": round(float(p1), 3),
        "median": round(float(median), 3),
        "p99": round(float(p99), 3),
        "max": round(float(pixels.max()), 3),
    }


def montage_records(dataset: Dataset, count: int = 24) -> list[SliceRecord]:
    """Up to ``count`` records spread over patients: round-robin, evenly spaced in each patient."""
    by_patient = dataset.by_patient()
    per_patient = max(1, -(-count // max(1, len(by_patient))))
    queues = []
    for records in by_patient.values():
        picks = np.linspace(0, len(records) - 1, min(per_patient, len(records))).round().astype(int)
        queues.append([records[i] for i in dict.fromkeys(picks)])
    chosen: list[SliceRecord] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def _drawing_order(structures) -> list[str]:
    """Myocardium and RV first, LV last, so the LV outline stays on top."""
    return sorted(structures, key=lambda s: s == LV)


def write_montage(dataset: Dataset, path: str | Path, count: int = 24, columns: int = 6) -> Path:
    """Draw a grid of slices with contours overlaid and save it as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    records = montage_records(dataset, count)
    columns = max(1, min(columns, len(records)))
    rows = max(1, -(-len(records) // columns))
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.4 * columns, 2.4 * rows + 0.6), squeeze=False
    )
    for axis in axes.ravel():
        axis.axis("off")
    for axis, record in zip(axes.ravel(), records, strict=False):
        low, high = np.percentile(record.image, [0.5, 99.5])
        axis.imshow(record.image, cmap="gray", vmin=low, vmax=max(high, low + 1e-6))
        for structure in _drawing_order(record.structures):
            outline = record.masks[structure]
            if structure == MYOCARDIUM and LV in record.masks:
                # the myocardium's inner edge is the LV's edge: draw its outer (epicardial) edge
                outline = outline | record.masks[LV]
            if outline.any():
                axis.contour(
                    outline.astype(np.float32),
                    levels=[0.5],
                    colors=STRUCTURE_COLOURS[structure],
                    linewidths=0.8,
                )
        phase = record.phase or ("-" if record.phase_index is None else f"p{record.phase_index}")
        slice_name = "-" if record.slice_index is None else record.slice_index
        # the caption sits inside the image, so captions never collide with the row above
        axis.text(
            0.02,
            0.98,
            f"{record.patient_id}\nslice {slice_name} {phase}",
            transform=axis.transAxes,
            va="top",
            ha="left",
            fontsize=6.5,
            color="white",
            bbox={"facecolor": "black", "alpha": 0.55, "pad": 1.5, "linewidth": 0},
        )
    present = [s for s in MASK_STRUCTURES if any(s in r.masks for r in records)]
    figure.legend(
        handles=[Line2D([], [], color=STRUCTURE_COLOURS[s], label=s) for s in present],
        loc="lower center",
        ncol=len(present) or 1,
        fontsize=8,
        frameon=False,
    )
    figure.suptitle(
        f"{Path(dataset.root).name} ({dataset.format}): {len(dataset)} slices, "
        f"{len(dataset.patients)} patients",
        fontsize=9,
    )
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.05, top=0.95, wspace=0.03, hspace=0.03)
    path = Path(path)
    atomic.write_with(path, lambda temporary: figure.savefig(temporary, format="png", dpi=110))
    plt.close(figure)
    return path
