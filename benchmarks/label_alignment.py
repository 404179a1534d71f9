"""Label alignment: does each expert mask sit on the bright blood pool of its image?

For every labelled slice of a dataset (as lvseg reads it), the shift of the LV mask (up to
``--reach`` px either way) that best sets a bright inside against a dark ring around it: in an
SSFP cine the blood pool is bright and the myocardium around it dark, so a mask drawn on its
image needs no shift (0-2 px, the width of the boundary). Per patient the median shift over its
slices is printed; a patient whose slices want large shifts has labels displaced from its
images (measured on the Sunnybrook PNGs: SC-N-06 alone, 12 of 13 slices beyond 5 px, its ES
masks 8-10 px up-left of the blood pool, with every model lvseg trained scoring Dice ~0.5 on
it, phantom-trained or Sunnybrook-trained alike). With ``--figure`` it draws the worst
patient's slices with the mask as given and as shifted.

Run from the project root::

    .venv/bin/python -m benchmarks.label_alignment [PATH] [--reach 16] [--figure out.png]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
from scipy import signal

from lvseg.data.load import labelled_dataset
from lvseg.data.records import LV

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RING_PX = 3
"""Width of the ring outside the mask that the blood pool must be brighter than."""
FLAG_PX = 5.0
"""A patient whose median shift is longer than this is listed as displaced."""


def best_shift(image: np.ndarray, mask: np.ndarray, reach: int) -> tuple[int, int]:
    """(rows, cols) to move ``mask`` by so that it best separates a bright inside from the dark
    ring around it (mean under the mask minus mean in a ``RING_PX`` ring just outside it): the
    blood pool against the myocardium. Brightness alone would slide it onto the RV."""
    scaled = image.astype(np.float64)
    low, high = np.percentile(scaled, [1, 99])
    scaled = np.clip((scaled - low) / max(high - low, 1e-6), 0, 1)
    rows, cols = np.nonzero(mask)
    pad = RING_PX + 1
    box = mask[
        max(rows.min() - pad, 0) : rows.max() + pad + 1,
        max(cols.min() - pad, 0) : cols.max() + pad + 1,
    ]
    origin = (max(rows.min() - pad, 0), max(cols.min() - pad, 0))
    ring = ndi.binary_dilation(box, iterations=RING_PX) & ~box
    kernel = box / box.sum() - ring / max(ring.sum(), 1)
    r0, c0 = max(origin[0] - reach, 0), max(origin[1] - reach, 0)
    r1 = min(origin[0] + box.shape[0] + reach, mask.shape[0])
    c1 = min(origin[1] + box.shape[1] + reach, mask.shape[1])
    score = signal.correlate(scaled[r0:r1, c0:c1], kernel, mode="valid")
    best = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(best[0] + r0 - origin[0]), int(best[1] + c0 - origin[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", default=str(SHARED / "sunnybrook-png"))
    parser.add_argument("--reach", type=int, default=16)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    if not Path(args.path).exists():
        sys.exit(f"error: {args.path}: not found (see ../shared/data/README.md)")
    records = [r for r in labelled_dataset(args.path).records if np.asarray(r.masks[LV]).any()]
    shifts: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for record in records:
        mask = np.asarray(record.masks[LV], bool)
        shifts[record.patient_id].append(best_shift(record.image, mask, args.reach))
    print(f"{args.path}: {len(records)} labelled slices of {len(shifts)} patients\n")
    print("| patient | slices | median shift (rows, cols) px | length px | slices > 5 px |")
    print("|---|---|---|---|---|")
    lengths = {}
    for patient, found in sorted(shifts.items()):
        moves = np.array(found)
        median = np.median(moves, axis=0)
        lengths[patient] = float(np.hypot(*median))
        far = int((np.hypot(moves[:, 0], moves[:, 1]) > FLAG_PX).sum())
        print(
            f"| {patient} | {len(found)} | ({median[0]:+.0f}, {median[1]:+.0f}) | "
            f"{lengths[patient]:.1f} | {far} |"
        )
    displaced = [p for p, length in lengths.items() if length > FLAG_PX]
    print(
        f"\nDisplaced (median shift > {FLAG_PX:g} px): "
        + (", ".join(displaced) if displaced else "none")
    )
    if args.figure:
        draw(records, shifts, max(lengths, key=lengths.get), args.figure)


def draw(records, shifts, patient: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in records if r.patient_id == patient][:4]
    moves = shifts[patient]
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.2 * len(chosen), 3.4))
    for ax, record, move in zip(np.atleast_1d(axes), chosen, moves, strict=False):
        mask = np.asarray(record.masks[LV], bool)
        rows, cols = np.nonzero(mask)
        centre = rows.mean(), cols.mean()
        ax.imshow(record.image, cmap="gray")
        ax.contour(mask, [0.5], colors="red", linewidths=1.2)
        ax.contour(np.roll(mask, move, axis=(0, 1)), [0.5], colors="lime", linewidths=1.0)
        ax.set_xlim(centre[1] - 45, centre[1] + 45)
        ax.set_ylim(centre[0] + 45, centre[0] - 45)
        ax.set_title(f"{record.key}: shift {move}", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{patient}: the label as given (red) and moved onto the blood pool (green)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
