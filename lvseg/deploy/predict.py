"""``lvseg predict``: segment the LV in whole studies with an exported model, and measure the
volumes over the cardiac cycle. Runs on ONNX Runtime and imports no torch.

Per study (:func:`lvseg.data.study.read_study`: a DICOM folder's short-axis cine, a NIfTI file,
or image files):

1. **Segment** every frame through the one inference path (:class:`lvseg.segment.Segmenter`,
   as ``lvseg evaluate`` does): resample and normalise as the model's embedded plan says,
   locate the heart in the study's whole images (every slice, up to four phases spread over the
   cycle), crop every frame there, segment, and map the LV probability back onto the source
   grid, threshold 0.5.
2. **Measure**: LV area per frame, volume per phase by disc summation (area x slice spacing),
   end-diastole and end-systole as the largest and smallest volume of the curve, EDV, ESV,
   stroke volume and ejection fraction (:mod:`lvseg.evaluate.clinical`).
3. **Write**, into a folder built beside ``--out`` and moved there when complete: ``masks.nii.gz``
   (the source geometry), ``overlays/`` (a PNG per frame), ``contours/`` (Sunnybrook text
   files, one per frame with an LV), ``frames.csv``, ``volumes.csv``, ``volume-curve.png`` and
   ``summary.json``. A folder with several studies gets one subfolder per study and
   ``studies.csv``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from lvseg import __version__, atomic
from lvseg.data.records import Geometry, SliceRecord
from lvseg.data.study import CineStudy, iter_studies
from lvseg.errors import InvalidInputError, Skipped
from lvseg.evaluate import clinical
from lvseg.figures import PREDICTION_COLOUR, display_range
from lvseg.formatting import rounded_or_blank
from lvseg.jsonsafe import json_safe
from lvseg.segment.locate import Placement
from lvseg.segment.onnx import ExportedModel, open_model
from lvseg.segment.quality import (
    CURVE_PHASES,
    EF_REVIEW_SHARE,
    FLAG_BELOW,
    FrameSignals,
    Judgement,
    curve_minima,
    judge,
    mode_mismatch,
    own_signals,
    scorer_for,
    share_at_risk,
    with_stack_signals,
)
from lvseg.segment.segmenter import BATCH_SIZE, Segmenter

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` as frames are segmented."""

CONTOUR_NAME = "s{slice:02d}-p{phase:02d}-icontour-auto.txt"
"""A frame's contour file, named by its place in the study like its overlay: two series or
repeated InstanceNumbers can never give two frames one name (frames.csv maps each to its
instance and source file)."""
SKIPPED_FILE = "skipped.csv"
SUMMARY_FILE = "summary.json"
OUTLINE_RGB = tuple(int(PREDICTION_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
FLAG_RGB = (255, 140, 0)
"""The frame drawn around overlays that quality control flags (orange)."""
REVIEW_FILE = "review.html"


@dataclass
class Segmentation:
    """The masks of one study and how they were made."""

    masks: np.ndarray
    """(slices, phases, rows, cols) bool, on the source grid."""
    placement: Placement
    notes: list[str] = field(default_factory=list)
    signals: list[dict[str, float]] = field(default_factory=list)
    """Every frame's quality signals (:mod:`lvseg.segment.quality`), slice by slice, phase by
    phase."""
    quality: Judgement | None = None
    """The frames' predicted Dice and flags (slice by slice, phase by phase), where the model
    embeds a quality score."""


# ------------------------------------------------------------------------------ segmenting


def study_records(study: CineStudy) -> list[SliceRecord]:
    """Every frame of a study as a record without masks, slice by slice, phase by phase: one
    stack for the segmenter."""
    slices, phases = study.images.shape[:2]
    return [
        SliceRecord(
            image=study.images[s, p],
            masks={},
            patient_id=study.patient_id,
            source=study.sources[s][p],
            geometry=Geometry(
                original_shape=study.images.shape[2:], pixel_spacing_mm=study.pixel_spacing_mm
            ),
            slice_index=s,
            phase_index=p,
            pixel_spacing_mm=study.pixel_spacing_mm,
        )
        for s in range(slices)
        for p in range(phases)
    ]


def segment_study(
    model: ExportedModel,
    study: CineStudy,
    *,
    batch_size: int = BATCH_SIZE,
    progress: ProgressCallback | None = None,
    tta: bool = False,
    flag_below: float = FLAG_BELOW,
) -> Segmentation:
    """LV masks of every frame of a study on its source grid, and their quality control."""
    segmenter = Segmenter(model, model.plan, crop="located", batch_size=batch_size, tta=tta)
    masks = np.zeros(study.images.shape, bool)
    phases = study.images.shape[1]
    placement = None
    records = study_records(study)
    scorer = scorer_for(getattr(model, "quality", None), tta)
    own: list[FrameSignals | None] = [None] * len(records)
    # Only the masks and the small quality signals are kept: the crops and probabilities of a
    # whole study would hold a few tens of MB more for nothing predict writes.
    for position, result in segmenter.iter_segment(records, progress):
        masks[divmod(position, phases)] = result.mask
        if scorer is not None:
            own[position] = own_signals(result)
        placement = result.placement
    assert placement is not None  # a study holds at least one frame
    signals, quality = [], None
    if scorer is not None:
        signals = with_stack_signals(records, own)  # type: ignore[arg-type]
        quality = judge(scorer, records, signals, flag_below)
    notes = [placement.note]
    embedded = getattr(model, "quality", None)
    if embedded is not None and scorer is None:
        notes.append(f"no quality control: the model has {mode_mismatch(embedded, tta)}")
    if model.plan.target_spacing_mm is None:
        notes.append(
            "the model has no pixel spacing (trained on images without one): images "
            "keep their pixel grid"
        )
    elif study.pixel_spacing_mm is None:
        notes.append("the input has no pixel spacing: images keep their pixel grid")
    return Segmentation(masks, placement, notes, signals, quality)


# ------------------------------------------------------------------------------ measuring


def measure(study: CineStudy, masks: np.ndarray) -> dict[str, Any]:
    """Areas per frame, the volume curve, ED/ES and EF (volumes None without the geometry)."""
    pixels = masks.sum(axis=(2, 3)).astype(np.float64)  # (slices, phases)
    spacing = study.pixel_spacing_mm
    areas = pixels * spacing[0] * spacing[1] if spacing else None
    thickness = study.slice_spacing_mm
    slices, phases = pixels.shape
    result: dict[str, Any] = {
        "slices": slices,
        "phases": phases,
        "pixel_spacing_mm": list(spacing) if spacing else None,
        "slice_spacing_mm": thickness,
        "lv_pixels": pixels,
        "lv_area_mm2": areas,
        "volume_ml": None,
        "volume_note": None,
    }
    if areas is None or thickness is None or slices < 2:
        result["volume_note"] = (
            "no volumes: they need the pixel spacing, the slice spacing and at least two slices"
        )
        return result
    volumes = np.array([clinical.disc_volume_ml(areas[:, p], thickness) for p in range(phases)])
    result["volume_ml"] = volumes
    if phases < 2:
        result["volume_note"] = "one phase: a volume, but no ED/ES or ejection fraction"
        return result
    ed, es = int(np.argmax(volumes)), int(np.argmin(volumes))
    edv, esv = float(volumes[ed]), float(volumes[es])
    result.update(
        ed_phase=ed,
        es_phase=es,
        edv_ml=edv,
        esv_ml=esv,
        sv_ml=clinical.stroke_volume(edv, esv),
        ef=clinical.ejection_fraction(edv, esv),
        volume_note="disc summation over every slice with an LV (area x slice spacing); ED and "
        "ES are the largest and smallest volume of the curve",
    )
    return result


# ------------------------------------------------------------------------------ writing


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


def _csv(header: list[str], rows: list[list[Any]]) -> str:
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


def _plot_curve(path: Path, study: CineStudy, found: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volumes = found["volume_ml"]
    phases = np.arange(len(volumes))
    figure, axis = plt.subplots(figsize=(6, 3.4), dpi=110)
    axis.plot(phases, volumes, "o-", color="#1f77b4", lw=1.6, ms=4)
    for key, colour, label in (("ed_phase", "#d62728", "ED"), ("es_phase", "#2ca02c", "ES")):
        if found.get(key) is not None:
            p = found[key]
            axis.plot(
                [p], [volumes[p]], "o", color=colour, ms=9, label=f"{label} {volumes[p]:.0f} ml"
            )
    axis.set_xlabel("phase")
    axis.set_ylabel("LV volume (ml)")
    ef = found.get("ef")
    title = f"{study.name}: EF {100 * ef:.1f}%" if ef is not None else study.name
    axis.set_title(title)
    axis.grid(alpha=0.3)
    if found.get("ed_phase") is not None:
        axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_study(
    folder: Path, study: CineStudy, segmentation: Segmentation, found: dict[str, Any], facts: dict
) -> dict[str, Any]:
    """Every output of one study into ``folder`` (already a temporary folder); the summary."""
    import nibabel as nib
    from PIL import Image

    from lvseg.data.contours import mask_to_contour, write_contour

    folder.mkdir(parents=True, exist_ok=True)
    masks = segmentation.masks
    nib.save(study.to_nifti(masks.astype(np.uint8)), str(folder / "masks.nii.gz"))
    (folder / "overlays").mkdir()
    (folder / "contours").mkdir()
    slices, phases = masks.shape[:2]
    frame_rows = []
    areas = found["lv_area_mm2"]
    quality = segmentation.quality
    for s in range(slices):
        for p in range(phases):
            mask = masks[s, p]
            name = f"s{s:02d}-p{p:02d}.png"
            frame = s * phases + p  # records and judgements run slice by slice, phase by phase
            flagged = quality is not None and bool(quality.flagged[frame])
            # zlib level 1: a third of the whole command's time went into level 6 (1.7 s of 5.4 s
            # for a 260-frame study), for files about 10% smaller (11 MB against 12 MB).
            picture = Image.fromarray(overlay(study.images[s, p], mask, flagged))
            picture.save(folder / "overlays" / name, compress_level=1)
            contour = ""
            if mask.any():
                contour = CONTOUR_NAME.format(slice=s, phase=p)
                write_contour(folder / "contours" / contour, mask_to_contour(mask))
            position = (
                None if study.slice_positions_mm is None else float(study.slice_positions_mm[s])
            )
            frame_rows.append(
                [s, p, rounded_or_blank(position), rounded_or_blank(_trigger(study, s, p)),
                 _instance(study, s, p), int(found["lv_pixels"][s, p]),
                 rounded_or_blank(None if areas is None else areas[s, p], 2), contour,
                 study.sources[s][p]]
                + ([] if quality is None else
                   [rounded_or_blank(quality.predicted_dice[frame]),
                    rounded_or_blank(quality.dice_low[frame]),
                    rounded_or_blank(quality.dice_high[frame]), int(flagged)])
            )  # fmt: skip
    header = ["slice", "phase", "position_mm", "trigger_time_ms", "instance", "lv_pixels"]
    header += ["lv_area_mm2", "contour", "source"]
    if quality is not None:
        header += ["predicted_dice", "predicted_dice_low", "predicted_dice_high", "flagged"]
    (folder / "frames.csv").write_text(_csv(header, frame_rows), encoding="utf-8")
    volumes = found["volume_ml"]
    if volumes is not None:
        rows = []
        for p, volume in enumerate(volumes):
            times = [_trigger(study, s, p) for s in range(slices)]
            times = [t for t in times if t is not None]
            rows.append(
                [
                    p,
                    rounded_or_blank(np.median(times) if times else None, 1),
                    rounded_or_blank(volume, 2),
                ]
            )
        text = _csv(["phase", "trigger_time_ms", "volume_ml"], rows)
        (folder / "volumes.csv").write_text(text, encoding="utf-8")
        _plot_curve(folder / "volume-curve.png", study, found)
    summary = {
        "lvseg_version": __version__,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": facts,
        "study": {
            "name": study.name,
            "patient_id": study.patient_id,
            "kind": study.kind,
            "series_description": study.series_description,
            "shape": list(study.images.shape),
            "pixel_spacing_mm": found["pixel_spacing_mm"],
            "slice_spacing_mm": found["slice_spacing_mm"],
            "notes": list(study.notes),
        },
        "crop_centre_resampled_px": [round(v, 2) for v in segmentation.placement.centre],
        "heart_located": segmentation.placement.located,
        "notes": segmentation.notes,
        "volume_note": found["volume_note"],
        "volumes_ml": None if volumes is None else [round(float(v), 3) for v in volumes],
        **{
            key: found.get(key)
            for key in ("ed_phase", "es_phase", "edv_ml", "esv_ml", "sv_ml", "ef")
        },
        "quality": quality_summary(quality, found, phases),
    }
    summary = json_safe(summary)
    text = json.dumps(summary, indent=1) + "\n"
    (folder / SUMMARY_FILE).write_text(text, encoding="utf-8")
    return summary


def quality_summary(
    quality: Judgement | None, found: dict[str, Any], phases: int
) -> dict[str, Any] | None:
    """What quality control says about a study, for ``summary.json`` (None without a score)."""
    if quality is None:
        return None
    judged = quality.predicted_dice[np.isfinite(quality.predicted_dice)]
    flagged = [
        {
            "slice": frame // phases,
            "phase": frame % phases,
            "predicted_dice": rounded_or_blank(quality.predicted_dice[frame]),
            "reason": reason,
        }
        for frame, reason in sorted(quality.reasons.items())
    ]
    pixels = np.asarray(found["lv_pixels"], dtype=np.float64).ravel()  # slice by slice
    frame_phases = [frame % phases for frame in range(pixels.size)]
    shares = share_at_risk(quality.flagged, frame_phases, pixels)
    ef = found.get("ef")
    verdict, trusted, at_risk = None, None, {}
    volumes = found.get("volume_ml")
    minima = [] if volumes is None else curve_minima(volumes)
    if ef is not None:
        at_risk = {name: shares[found[f"{name.lower()}_phase"]] for name in ("ED", "ES")}
        worst = max(at_risk, key=at_risk.get)
        trusted = at_risk[worst] <= EF_REVIEW_SHARE and len(minima) <= 1
        doubts = []
        if at_risk[worst] > 0:
            doubts.append(f"flagged frames hold {100 * at_risk[worst]:.0f}% of the {worst} volume")
        if len(minima) > 1:
            doubts.append(
                f"the volume curve has {len(minima)} minima (phases "
                + ", ".join(str(m) for m in minima)
                + ")"
            )
        verdict = (
            f"EF {100 * ef:.1f}% ("
            + ("; ".join(doubts) if doubts else "no doubt at ED or ES")
            + ("; review)" if not trusted else ")")
        )
    return {
        "flag_below": quality.flag_below,
        "judged_frames": int(judged.size),
        "mean_predicted_dice": rounded_or_blank(judged.mean()) if judged.size else None,
        "min_predicted_dice": rounded_or_blank(judged.min()) if judged.size else None,
        "flagged_frames": flagged,
        "volume_share_flagged": {k: rounded_or_blank(v) for k, v in at_risk.items()} or None,
        "volume_curve_minima": minima
        if volumes is not None and len(volumes) >= CURVE_PHASES
        else None,
        "ef_trusted": trusted,
        "verdict": verdict,
    }


def _quality_columns(quality: dict[str, Any]) -> list[Any]:
    trusted = quality["ef_trusted"]
    return [
        quality["mean_predicted_dice"],
        quality["min_predicted_dice"],
        len(quality["flagged_frames"]),
        "" if trusted is None else int(trusted),
    ]


def review_page(results: list[dict[str, Any]], below: float, single: bool) -> str:
    """A small self-contained HTML page with only the flagged frames' overlays, worst first."""
    cards = []
    for result in results:
        quality = result.get("quality") or {}
        prefix = "" if single else f"{html.escape(result['study']['name'])}/"
        for frame in quality.get("flagged_frames", []):
            name = f"overlays/s{frame['slice']:02d}-p{frame['phase']:02d}.png"
            score = frame["predicted_dice"]
            cards.append(
                (
                    -1.0 if score == "" else float(score),
                    f'<figure><img src="{prefix}{name}" alt="{prefix}{name}"><figcaption>'
                    f"{html.escape(result['study']['name'])} slice {frame['slice']} phase "
                    f"{frame['phase']}: {html.escape(frame['reason'])}</figcaption></figure>",
                )
            )
    cards.sort(key=lambda card: card[0])
    verdicts = [
        f"<li>{html.escape(r['study']['name'])}: {html.escape(r['quality']['verdict'] or '')}"
        f" ({len(r['quality']['flagged_frames'])} frames flagged)</li>"
        for r in results
        if r.get("quality")
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


# ------------------------------------------------------------------------------ predict


def predict(
    model_spec: str | Path,
    input_path: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    skip_invalid: bool = False,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    tta: bool | None = None,
    review_below: float | None = None,
) -> dict[str, Any]:
    """Segment every study of ``input_path`` with an exported model into the folder ``out``.

    ``skip_invalid`` leaves out unreadable files and studies without a usable cine
    (:func:`lvseg.data.study.iter_studies`); they are listed in ``skipped`` and in
    ``skipped.csv``. ``review_below`` flags frames whose predicted Dice is under it (instead of
    :data:`lvseg.segment.quality.FLAG_BELOW`) and writes ``review.html`` with only those."""
    if review_below is not None and not 0.0 < review_below <= 1.0:
        raise InvalidInputError(None, f"--review-below must be in (0, 1], got {review_below}")
    out = Path(out)
    atomic.check_output_folder(out, overwrite, keep=(model_spec, input_path))
    model = open_model(model_spec, threads=threads)
    tta = model.tta if tta is None else tta  # the export's choice unless told otherwise
    scorer = scorer_for(model.quality, tta)
    if review_below is not None and scorer is None:
        raise InvalidInputError(
            model.path,
            "--review-below needs a model exported with a quality-control score"
            + ("" if model.quality is None else f" ({mode_mismatch(model.quality, tta)})"),
        )
    flag_below = FLAG_BELOW if review_below is None else review_below
    facts = {
        "file": str(model.path),
        "name": model.model_name,
        "precision": model.precision,
        "tta": tta,
        "plan": model.plan.to_dict(),
        "quality_score": None if scorer is None else scorer.source,
    }
    results = []
    done = 0
    with atomic.output_folder(out) as folder:
        # One study in memory at a time; each is written into its own subfolder, moved up to
        # the top when it turns out to be the only one.
        skipped: list[Skipped] = []
        for study in iter_studies(input_path, skip_invalid=skip_invalid, skipped=skipped):
            frames = int(np.prod(study.images.shape[:2]))

            def report(finished: int, _count: int, before: int = done, frames: int = frames):
                if progress is not None:
                    progress(before + finished, before + frames)

            segmentation = segment_study(
                model, study, progress=report, tta=tta, flag_below=flag_below
            )
            found = measure(study, segmentation.masks)
            summary = write_study(folder / study.name, study, segmentation, found, facts)
            summary["folder"] = str(out / study.name)
            results.append(summary)
            done += frames
            del study, segmentation, found
        single = len(results) == 1
        if single:
            only = folder / results[0]["study"]["name"]
            for item in only.iterdir():
                item.rename(folder / item.name)
            only.rmdir()
            results[0]["folder"] = str(out)
        else:
            keys = ["name", "patient_id", "slices", "phases", "edv_ml", "esv_ml", "sv_ml", "ef"]
            if scorer is not None:
                keys += ["mean_predicted_dice", "min_predicted_dice", "flagged_frames"]
                keys += ["ef_trusted"]
            rows = [
                [r["study"]["name"], r["study"]["patient_id"], *r["study"]["shape"][:2]]
                + [rounded_or_blank(r.get(k)) for k in keys[4:8]]
                + ([] if r["quality"] is None else _quality_columns(r["quality"]))
                for r in results
            ]
            (folder / "studies.csv").write_text(_csv(keys, rows), encoding="utf-8")
        if review_below is not None:
            page = review_page(results, review_below, single)
            (folder / REVIEW_FILE).write_text(page, encoding="utf-8")
        if skipped:
            text = _csv(["path", "reason"], [[item.path, item.reason] for item in skipped])
            (folder / SKIPPED_FILE).write_text(text, encoding="utf-8")
    return {
        "model": facts,
        "studies": results,
        "skipped": [{"path": item.path, "reason": item.reason} for item in skipped],
        "out": str(out),
    }
