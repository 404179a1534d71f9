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

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lvseg import __version__, atomic
from lvseg.data.records import Geometry, SliceRecord
from lvseg.data.study import CineStudy, iter_studies
from lvseg.deploy.outputs import SUMMARY_FILE, csv_text, review_page, write_study
from lvseg.deploy.results import (
    FlaggedFrame,
    ModelUsed,
    Prediction,
    Segmentation,
    StudyFacts,
    StudyQuality,
    StudySummary,
    StudyVolumes,
)
from lvseg.errors import InvalidInputError
from lvseg.evaluate import clinical
from lvseg.formatting import rounded_or_blank
from lvseg.segment.onnx import ExportedModel, open_model
from lvseg.segment.quality import (
    CURVE_PHASES,
    EF_REVIEW_SHARE,
    FLAG_BELOW,
    FrameSignals,
    Judgement,
    QualityModel,
    curve_minima,
    judge,
    mode_mismatch,
    own_signals,
    scorer_for,
    share_at_risk,
    with_stack_signals,
)
from lvseg.segment.segmenter import BATCH_SIZE, Segmenter

__all__ = ["SUMMARY_FILE", "Prediction", "StudySummary", "predict", "quality_summary"]

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` as frames are segmented."""

SKIPPED_FILE = "skipped.csv"
REVIEW_FILE = "review.html"


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
                original_shape=study.images.shape[2:],
                source_pixel_spacing_mm=study.pixel_spacing_mm,
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


def measure(study: CineStudy, masks: np.ndarray) -> StudyVolumes:
    """Areas per frame, the volume curve, ED/ES and EF (volumes None without the geometry)."""
    pixels = masks.sum(axis=(2, 3)).astype(np.float64)  # (slices, phases)
    spacing = study.pixel_spacing_mm
    areas = pixels * spacing[0] * spacing[1] if spacing else None
    thickness = study.slice_spacing_mm
    slices, phases = pixels.shape
    found = StudyVolumes(
        slices=slices,
        phases=phases,
        pixel_spacing_mm=list(spacing) if spacing else None,
        slice_spacing_mm=thickness,
        lv_pixels=pixels,
        lv_area_mm2=areas,
    )
    if areas is None or thickness is None or slices < 2:
        found.volume_note = (
            "no volumes: they need the pixel spacing, the slice spacing and at least two slices"
        )
        return found
    volumes = np.array([clinical.disc_volume_ml(areas[:, p], thickness) for p in range(phases)])
    found.volume_ml = volumes
    if phases < 2:
        found.volume_note = "one phase: a volume, but no ED/ES or ejection fraction"
        return found
    ed, es = int(np.argmax(volumes)), int(np.argmin(volumes))
    edv, esv = float(volumes[ed]), float(volumes[es])
    found.ed_phase, found.es_phase, found.edv_ml, found.esv_ml = ed, es, edv, esv
    found.sv_ml = clinical.stroke_volume(edv, esv)
    found.ef = clinical.ejection_fraction(edv, esv)
    found.volume_note = (
        "disc summation over every slice with an LV (area x slice spacing); ED and "
        "ES are the largest and smallest volume of the curve"
    )
    return found


def _verdict(ef: float, at_risk: dict[str, float], minima: list[int]) -> tuple[bool, str]:
    """Whether an EF can be trusted (little of the ED and ES volume in flagged frames, one
    minimum of the volume curve), and the sentence that says why."""
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
    return trusted, verdict


def quality_summary(
    quality: Judgement | None, found: StudyVolumes, phases: int
) -> StudyQuality | None:
    """What quality control says about a study, for ``summary.json`` (None without a score)."""
    if quality is None:
        return None
    judged = quality.predicted_dice[np.isfinite(quality.predicted_dice)]
    flagged = [
        FlaggedFrame(
            slice=frame // phases,
            phase=frame % phases,
            predicted_dice=rounded_or_blank(quality.predicted_dice[frame]),
            reason=reason,
        )
        for frame, reason in sorted(quality.reasons.items())
    ]
    pixels = np.asarray(found.lv_pixels, dtype=np.float64).ravel()  # slice by slice
    frame_phases = [frame % phases for frame in range(pixels.size)]
    shares = share_at_risk(quality.flagged, frame_phases, pixels)
    verdict, trusted, at_risk = None, None, {}
    volumes = found.volume_ml
    minima = [] if volumes is None else curve_minima(volumes)
    if found.ef is not None:
        at_risk = {"ED": shares[found.ed_phase], "ES": shares[found.es_phase]}
        trusted, verdict = _verdict(found.ef, at_risk, minima)
    return StudyQuality(
        flag_below=quality.flag_below,
        judged_frames=int(judged.size),
        mean_predicted_dice=rounded_or_blank(judged.mean()) if judged.size else None,
        min_predicted_dice=rounded_or_blank(judged.min()) if judged.size else None,
        flagged_frames=flagged,
        volume_share_flagged={k: rounded_or_blank(v) for k, v in at_risk.items()} or None,
        volume_curve_minima=minima
        if volumes is not None and len(volumes) >= CURVE_PHASES
        else None,
        ef_trusted=trusted,
        verdict=verdict,
    )


def study_summary(
    study: CineStudy, segmentation: Segmentation, found: StudyVolumes, model: ModelUsed
) -> StudySummary:
    """A study's ``summary.json``: the model, the study, where the heart was, the volumes and
    what quality control says."""
    volumes = found.volume_ml
    facts = StudyFacts(
        name=study.name,
        patient_id=study.patient_id,
        kind=study.kind,
        series_description=study.series_description,
        shape=list(study.images.shape),
        pixel_spacing_mm=found.pixel_spacing_mm,
        slice_spacing_mm=found.slice_spacing_mm,
        notes=list(study.notes),
    )
    return StudySummary(
        lvseg_version=__version__,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model=model,
        study=facts,
        crop_centre_resampled_px=[round(v, 2) for v in segmentation.placement.centre],
        heart_located=segmentation.placement.located,
        notes=segmentation.notes,
        volume_note=found.volume_note,
        volumes_ml=None if volumes is None else [round(float(v), 3) for v in volumes],
        ed_phase=found.ed_phase,
        es_phase=found.es_phase,
        edv_ml=found.edv_ml,
        esv_ml=found.esv_ml,
        sv_ml=found.sv_ml,
        ef=found.ef,
        quality=quality_summary(segmentation.quality, found, found.phases),
    )


# ------------------------------------------------------------------------------ predict


def _studies_table(results: list[StudySummary], scored: bool) -> str:
    """``studies.csv``: one line per study, its volumes and EF (and, with a quality score, what
    quality control says)."""
    keys = ["name", "patient_id", "slices", "phases", "edv_ml", "esv_ml", "sv_ml", "ef"]
    if scored:
        keys += ["mean_predicted_dice", "min_predicted_dice", "flagged_frames", "ef_trusted"]
    rows = []
    for r in results:
        row = [r.study.name, r.study.patient_id, *r.study.shape[:2]]
        row += [rounded_or_blank(value) for value in (r.edv_ml, r.esv_ml, r.sv_ml, r.ef)]
        if r.quality is not None:
            trusted = r.quality.ef_trusted
            row += [r.quality.mean_predicted_dice, r.quality.min_predicted_dice]
            row += [len(r.quality.flagged_frames), "" if trusted is None else int(trusted)]
        rows.append(row)
    return csv_text(keys, rows)


def _model_used(model: ExportedModel, tta: bool, scorer: QualityModel | None) -> ModelUsed:
    return ModelUsed(
        file=str(model.path),
        name=model.model_name,
        precision=model.precision,
        tta=tta,
        plan=model.plan.to_dict(),
        quality_score=None if scorer is None else scorer.source,
    )


def _single_study(folder: Path, out: Path, results: list[StudySummary]) -> None:
    """One study: its outputs move up from its subfolder to the top of the folder."""
    only = folder / results[0].study.name
    for item in only.iterdir():
        item.rename(folder / item.name)
    only.rmdir()
    results[0].folder = str(out)


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
) -> Prediction:
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
    found = Prediction(_model_used(model, tta, scorer), out=str(out))
    done = 0
    with atomic.output_folder(out) as folder:
        # One study in memory at a time; each is written into its own subfolder, moved up to
        # the top when it turns out to be the only one.
        for study in iter_studies(input_path, skip_invalid=skip_invalid, skipped=found.skipped):
            frames = int(np.prod(study.images.shape[:2]))

            def report(finished: int, _count: int, before: int = done, frames: int = frames):
                if progress is not None:
                    progress(before + finished, before + frames)

            segmentation = segment_study(
                model, study, progress=report, tta=tta, flag_below=flag_below
            )
            volumes = measure(study, segmentation.masks)
            summary = study_summary(study, segmentation, volumes, found.model)
            write_study(folder / study.name, study, segmentation, volumes, summary)
            summary.folder = str(out / study.name)
            found.studies.append(summary)
            done += frames
            del study, segmentation, volumes
        single = len(found.studies) == 1
        if single:
            _single_study(folder, out, found.studies)
        else:
            table = _studies_table(found.studies, scorer is not None)
            (folder / "studies.csv").write_text(table, encoding="utf-8")
        if review_below is not None:
            page = review_page(found.studies, review_below, single)
            (folder / REVIEW_FILE).write_text(page, encoding="utf-8")
        if found.skipped:
            rows = [[item.path, item.reason] for item in found.skipped]
            (folder / SKIPPED_FILE).write_text(csv_text(["path", "reason"], rows), encoding="utf-8")
    return found
