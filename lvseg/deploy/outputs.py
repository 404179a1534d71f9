"""What ``lvseg predict`` writes for each study: ``masks.nii.gz`` (the source geometry),
``overlays/`` (a PNG per frame, flagged frames framed in orange), ``contours/`` (Sunnybrook text
files, one per frame with an LV), ``frames.csv``, ``volumes.csv``, ``volume-curve.png`` and
``summary.json``; and ``review.html`` with only the flagged frames.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from lvseg.data.study import CineStudy
from lvseg.deploy.results import Segmentation, StudySummary, StudyVolumes
from lvseg.figures import PREDICTION_COLOUR, display_range
from lvseg.formatting import rounded_or_blank
from lvseg.jsonsafe import json_safe
from lvseg.segment.quality import Judgement

CONTOUR_NAME = "s{slice:02d}-p{phase:02d}-icontour-auto.txt"
"""A frame's contour file, named by its place in the study like its overlay: two series or
repeated InstanceNumbers can never give two frames one name (frames.csv maps each to its
instance and source file)."""
SUMMARY_FILE = "summary.json"
OUTLINE_RGB = tuple(int(PREDICTION_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
FLAG_RGB = (255, 140, 0)
"""The frame drawn around overlays that quality control flags (orange)."""
FRAME_COLUMNS = ["slice", "phase", "position_mm", "trigger_time_ms", "instance", "lv_pixels"]
FRAME_COLUMNS += ["lv_area_mm2", "contour", "source"]
QUALITY_COLUMNS = ["predicted_dice", "predicted_dice_low", "predicted_dice_high", "flagged"]


def overlay(image: np.ndarray, mask: np.ndarray, flagged: bool = False) -> np.ndarray:
    """An RGB picture of the frame with the LV outline in the prediction colour, windowed as
    every lvseg picture of a slice is (:mod:`lvseg.figures`); the outline (mask pixels with a
    background 4-neighbour) is drawn directly rather than through matplotlib: ~1 ms a frame.
    A frame flagged by quality control gets a frame of :data:`FLAG_RGB` around the picture."""
    low, high = display_range(image)
    grey = (np.clip((image - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([grey, grey, grey], axis=-1)
    edge = mask & ~ndi.binary_erosion(mask, border_value=0)
    rgb[edge] = OUTLINE_RGB
    if flagged:
        width = max(2, min(rgb.shape[:2]) // 64)
        for band in (np.s_[:width], np.s_[-width:]):
            rgb[band, :] = FLAG_RGB
            rgb[:, band] = FLAG_RGB
    return rgb


def _instance(study: CineStudy, s: int, p: int) -> int:
    if study.instance_numbers is not None:
        return int(study.instance_numbers[s, p])
    return s * study.images.shape[1] + p + 1


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    """A CSV file's text: the header, then the rows (every table predict writes)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _trigger(study: CineStudy, s: int, p: int) -> float | None:
    if study.trigger_times_ms is None:
        return None
    value = float(study.trigger_times_ms[s, p])
    return value if math.isfinite(value) else None


def _plot_curve(path: Path, study: CineStudy, found: StudyVolumes) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volumes = found.volume_ml
    phases = np.arange(len(volumes))
    figure, axis = plt.subplots(figsize=(6, 3.4), dpi=110)
    axis.plot(phases, volumes, "o-", color="#1f77b4", lw=1.6, ms=4)
    for p, colour, label in ((found.ed_phase, "#d62728", "ED"), (found.es_phase, "#2ca02c", "ES")):
        if p is not None:
            axis.plot(
                [p], [volumes[p]], "o", color=colour, ms=9, label=f"{label} {volumes[p]:.0f} ml"
            )
    axis.set_xlabel("phase")
    axis.set_ylabel("LV volume (ml)")
    ef = found.ef
    title = f"{study.name}: EF {100 * ef:.1f}%" if ef is not None else study.name
    axis.set_title(title)
    axis.grid(alpha=0.3)
    if found.ed_phase is not None:
        axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _frame_row(study: CineStudy, s: int, p: int, found: StudyVolumes, contour: str) -> list:
    """A frame's row of ``frames.csv`` (without the quality columns)."""
    areas = found.lv_area_mm2
    position = None if study.slice_positions_mm is None else float(study.slice_positions_mm[s])
    return [
        s,
        p,
        rounded_or_blank(position),
        rounded_or_blank(_trigger(study, s, p)),
        _instance(study, s, p),
        int(found.lv_pixels[s, p]),
        rounded_or_blank(None if areas is None else areas[s, p], 2),
        contour,
        study.sources[s][p],
    ]


def _quality_row(quality: Judgement, frame: int) -> list:
    """A frame's quality columns of ``frames.csv``."""
    return [
        rounded_or_blank(quality.predicted_dice[frame]),
        rounded_or_blank(quality.dice_low[frame]),
        rounded_or_blank(quality.dice_high[frame]),
        int(bool(quality.flagged[frame])),
    ]


def _write_frames(
    folder: Path, study: CineStudy, segmentation: Segmentation, found: StudyVolumes
) -> None:
    """Every frame's overlay and contour, and ``frames.csv``."""
    from PIL import Image

    from lvseg.data.contours import mask_to_contour, write_contour

    (folder / "overlays").mkdir()
    (folder / "contours").mkdir()
    masks, quality = segmentation.masks, segmentation.quality
    slices, phases = masks.shape[:2]
    rows = []
    for s in range(slices):
        for p in range(phases):
            mask = masks[s, p]
            frame = s * phases + p  # records and judgements run slice by slice, phase by phase
            flagged = quality is not None and bool(quality.flagged[frame])
            # zlib level 1: a third of the whole command's time went into level 6 (1.7 s of 5.4 s
            # for a 260-frame study), for files about 10% smaller (11 MB against 12 MB).
            picture = Image.fromarray(overlay(study.images[s, p], mask, flagged))
            picture.save(folder / "overlays" / f"s{s:02d}-p{p:02d}.png", compress_level=1)
            contour = ""
            if mask.any():
                contour = CONTOUR_NAME.format(slice=s, phase=p)
                write_contour(folder / "contours" / contour, mask_to_contour(mask))
            row = _frame_row(study, s, p, found, contour)
            rows.append(row + ([] if quality is None else _quality_row(quality, frame)))
    header = FRAME_COLUMNS + ([] if quality is None else QUALITY_COLUMNS)
    (folder / "frames.csv").write_text(csv_text(header, rows), encoding="utf-8")


def _write_volumes(folder: Path, study: CineStudy, found: StudyVolumes) -> None:
    """``volumes.csv`` (each phase's median trigger time and volume) and the volume curve."""
    rows = []
    for p, volume in enumerate(found.volume_ml):
        times = [_trigger(study, s, p) for s in range(found.slices)]
        times = [t for t in times if t is not None]
        trigger = rounded_or_blank(np.median(times) if times else None, 1)
        rows.append([p, trigger, rounded_or_blank(volume, 2)])
    text = csv_text(["phase", "trigger_time_ms", "volume_ml"], rows)
    (folder / "volumes.csv").write_text(text, encoding="utf-8")
    _plot_curve(folder / "volume-curve.png", study, found)


def write_study(
    folder: Path,
    study: CineStudy,
    segmentation: Segmentation,
    found: StudyVolumes,
    summary: StudySummary,
) -> None:
    """Every output of one study into ``folder`` (already a temporary folder), ``summary.json``
    last."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    masks = segmentation.masks
    nib.save(study.to_nifti(masks.astype(np.uint8)), str(folder / "masks.nii.gz"))
    _write_frames(folder, study, segmentation, found)
    if found.volume_ml is not None:
        _write_volumes(folder, study, found)
    text = json.dumps(json_safe(summary), indent=1) + "\n"
    (folder / SUMMARY_FILE).write_text(text, encoding="utf-8")


def _review_cards(summary: StudySummary, prefix: str) -> list[tuple[float, str]]:
    """(predicted Dice, HTML figure) of every flagged frame of a study ("" Dice sorts first)."""
    cards = []
    name = html.escape(summary.study.name)
    for frame in summary.quality.flagged_frames if summary.quality is not None else []:
        picture = f"overlays/s{frame.slice:02d}-p{frame.phase:02d}.png"
        score = frame.predicted_dice
        cards.append(
            (
                -1.0 if score == "" else float(score),
                f'<figure><img src="{prefix}{picture}" alt="{prefix}{picture}"><figcaption>'
                f"{name} slice {frame.slice} phase "
                f"{frame.phase}: {html.escape(frame.reason)}</figcaption></figure>",
            )
        )
    return cards


def review_page(results: list[StudySummary], below: float, single: bool) -> str:
    """A small self-contained HTML page with only the flagged frames' overlays, worst first."""
    cards = []
    for result in results:
        prefix = "" if single else f"{html.escape(result.study.name)}/"
        cards += _review_cards(result, prefix)
    cards.sort(key=lambda card: card[0])
    verdicts = [
        f"<li>{html.escape(r.study.name)}: {html.escape(r.quality.verdict or '')}"
        f" ({len(r.quality.flagged_frames)} frames flagged)</li>"
        for r in results
        if r.quality is not None
    ]
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>lvseg review</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}figure{display:inline-block;"
        "margin:.5em;width:256px}img{width:256px;image-rendering:pixelated}"
        "figcaption{font-size:12px}</style></head><body>\n"
        f"<h1>Frames to review (predicted Dice under {below:g})</h1>\n"
        f"<ul>{''.join(verdicts)}</ul>\n"
        + (
            "\n".join(card for _, card in cards)
            if cards
            else "<p>No frame flagged: nothing to review.</p>"
        )
        + "\n</body></html>\n"
    )
