"""Phantom against real MRI, side by side: where the phantom is not yet like Sunnybrook.

For every labelled slice (ED and ES, with an LV) of a phantom and of the real Sunnybrook data,
as lvseg reads them (``labelled_dataset``: the PNGs get 1.33 mm pixels by name, the DICOMs
their headers' spacing), the statistics a segmenter learns from:

- **anatomy**: LV area (mm^2) in the basal, mid and apical thirds of the labelled stack at ED,
  the ES/ED area ratio of a slice (contraction; pooled and per Sunnybrook group), the wall
  thickness at ED where the myocardium is drawn (the phantom's masks, the DICOM epicardial
  contours; ``(A_epi - A_endo) / (pi (r_epi + r_endo))`` with ``r = sqrt(A / pi)``), and the LV
  centroid's distance from the image centre in mm;
- **contrast**, on each image scaled to its 1st-99th percentiles: the blood pool (the LV mask
  eroded by a pixel), the ring 2-5 mm outside it (mostly myocardium), the surroundings 15-30 mm
  away, and the blood-to-ring contrast ``(blood - ring) / (blood + ring)``;
- **acquisition**: pixel spacing, field of view (mm), slice thickness.

Each cell is the median [quartiles] over slices; the last column is the phantom's median over
the real one's (PNG), so the gaps to close sort themselves. Run from the project root::

    .venv/bin/python -m benchmarks.phantom_realism [--phantom DIR|phantom] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

from lvseg.data.load import labelled_dataset
from lvseg.data.records import ED, ES, LV, MYOCARDIUM, SliceRecord
from lvseg.evaluate.summary import slice_positions

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def scaled(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1.5)


def band(mask: np.ndarray, inner_mm: float, outer_mm: float, pixel_mm: float) -> np.ndarray:
    """Pixels between ``inner_mm`` and ``outer_mm`` outside the mask."""
    distance = ndi.distance_transform_edt(~mask) * pixel_mm
    return (distance > inner_mm) & (distance <= outer_mm)


def slice_stats(record: SliceRecord) -> dict[str, float]:
    lv = np.asarray(record.masks[LV], bool)
    pixel_mm = float(np.sqrt(np.prod(record.pixel_spacing_mm or (1.0, 1.0))))
    image = scaled(record.image.astype(np.float64))
    inner = ndi.binary_erosion(lv)
    blood = float(image[inner].mean()) if inner.any() else float(image[lv].mean())
    ring = float(image[band(lv, 2, 5, pixel_mm)].mean())
    far = float(np.median(image[band(lv, 15, 30, pixel_mm)]))
    centre = np.array(lv.shape) / 2 - 0.5
    found = {
        "area": float(lv.sum()) * pixel_mm**2,
        "blood": blood,
        "ring": ring,
        "surroundings": far,
        "contrast": (blood - ring) / max(blood + ring, 1e-6),
        "offset": float(np.linalg.norm(np.argwhere(lv).mean(axis=0) - centre)) * pixel_mm,
        "spacing": pixel_mm,
        "fov": float(max(lv.shape)) * pixel_mm,
    }
    if record.slice_thickness_mm:
        found["thickness"] = float(record.slice_thickness_mm)
    myocardium = record.masks.get(MYOCARDIUM)
    if myocardium is not None and np.asarray(myocardium).any():
        endo = float(lv.sum()) * pixel_mm**2
        epi = endo + float(np.asarray(myocardium, bool).sum()) * pixel_mm**2
        r_endo, r_epi = np.sqrt(endo / np.pi), np.sqrt(epi / np.pi)
        found["wall"] = (epi - endo) / (np.pi * (r_epi + r_endo))
    return found


def collect(path: str | Path) -> dict[str, list[float]]:
    """Every statistic over the labelled ED and ES slices of one source."""
    records = [r for r in labelled_dataset(path).records if r.phase in (ED, ES)]
    positions = slice_positions(records)
    values: dict[str, list[float]] = defaultdict(list)
    at_ed: dict[tuple, float] = {}
    stats = {r.key: slice_stats(r) for r in records}
    for record in records:
        found = stats[record.key]
        if record.phase == ED:
            at_ed[(record.patient_id, record.slice_index)] = found["area"]
            where = positions.get(record.key)
            if where:
                values[f"LV area at ED, {where} (mm^2)"].append(found["area"])
            if "wall" in found:
                values["wall thickness at ED (mm)"].append(found["wall"])
        for key, name in (
            ("blood", "blood pool intensity"),
            ("ring", "ring 2-5 mm out (myocardium)"),
            ("surroundings", "surroundings 15-30 mm out"),
            ("contrast", "blood-to-ring contrast"),
            ("offset", "LV off the image centre (mm)"),
            ("spacing", "pixel spacing (mm)"),
            ("fov", "field of view (mm)"),
            ("thickness", "slice thickness (mm)"),
        ):
            if key in found:
                values[name].append(found[key])
    for record in records:
        ed = at_ed.get((record.patient_id, record.slice_index))
        if record.phase == ES and ed:
            values["ES/ED area of a slice"].append(stats[record.key]["area"] / ed)
            # by group too: the groups' shares of slices differ between datasets (dilated
            # hearts have more), which moves the pooled median without any heart differing
            if record.group:
                values[f"ES/ED area of a slice, {record.group}"].append(
                    stats[record.key]["area"] / ed
                )
    return values


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    digits = 0 if q2 >= 100 else 2
    return f"{q2:.{digits}f} [{q1:.{digits}f}-{q3:.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phantom", default="phantom", help="a phantom folder, or the default")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sources = {
        "phantom": args.phantom,
        "Sunnybrook PNG": SHARED / "sunnybrook-png",
        "Sunnybrook DICOM": SHARED / "sunnybrook-dicom",
    }
    missing = [str(p) for name, p in sources.items() if name != "phantom" and not p.is_dir()]
    if missing:
        sys.exit(f"error: no real data at {', '.join(missing)} (see ../shared/data/README.md)")
    found = {name: collect(path) for name, path in sources.items()}
    names = list(dict.fromkeys(k for values in found.values() for k in values))
    print(f"\nPhantom ({args.phantom}) against Sunnybrook: median [quartiles] over slices\n")
    print("| statistic | " + " | ".join(sources) + " | phantom / PNG |")
    print("|---|" + "---|" * (len(sources) + 1))
    for name in names:
        phantom, real = found["phantom"].get(name), found["Sunnybrook PNG"].get(name)
        ratio = (
            f"{np.median(phantom) / np.median(real):.2f}"
            if phantom and real and np.median(real)
            else "-"
        )
        print(
            f"| {name} | "
            + " | ".join(cell(found[s].get(name, [])) for s in sources)
            + f" | {ratio} |"
        )
    if args.json:
        summary = {s: {k: np.percentile(v, [25, 50, 75]).tolist() for k, v in found[s].items()}
                   for s in sources}  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
