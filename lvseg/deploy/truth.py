"""A prediction of the phantom against the phantom's truth: what ``make demo`` ends with.

The phantom knows every patient's true volumes (``phantom.json``: the EDV and ESV of its own LV
masks by disc summation, the way ``lvseg predict`` measures a study, so a perfect segmentation
scores an error of 0; phantoms written before they were recorded give the EF the anatomy was
drawn for). ``lvseg predict`` over the phantom's studies measures them from its masks;
:func:`phantom_truth` pairs them by patient id and, given the run, says which studies the model
trained on, so a user sees at once whether it measures hearts it never saw as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lvseg.data.phantom import read_manifest
from lvseg.deploy.predict import SUMMARY_FILE
from lvseg.errors import InvalidInputError

EF_CLOSE_POINTS = 5.0
"""An EF within this many points of the truth counts as right."""


@dataclass(frozen=True)
class StudyTruth:
    """One predicted study beside its phantom patient."""

    study: str
    patient_id: str
    group: str
    true_ef: float
    predicted_ef: float | None
    trusted: bool | None
    """What quality control said of the predicted EF (None without a score)."""
    true_edv_ml: float | None = None
    true_esv_ml: float | None = None
    predicted_edv_ml: float | None = None
    predicted_esv_ml: float | None = None
    held_out: bool | None = None
    """False for a patient the model trained on, True for one it did not (None: not known)."""

    @property
    def error_points(self) -> float | None:
        if self.predicted_ef is None:
            return None
        return 100.0 * (self.predicted_ef - self.true_ef)


def summaries(prediction: Path) -> list[dict]:
    """The ``summary.json`` of every study a ``lvseg predict`` output folder holds."""
    found = [prediction / SUMMARY_FILE] if (prediction / SUMMARY_FILE).is_file() else []
    found += sorted(prediction.glob(f"*/{SUMMARY_FILE}"))
    if not found:
        raise InvalidInputError(prediction, "no summary.json: not an lvseg predict output")
    out = []
    for path in found:
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidInputError(path, f"unreadable summary ({error})") from None
    return out


def trained_patients(run: str | Path) -> set[str]:
    """The patients a run trained on, as its store recorded them."""
    from lvseg.runs.store import RunStore

    with RunStore.open(run, readonly=True) as store:
        patients = store.meta.get("train_patients")
    if not isinstance(patients, list):
        raise InvalidInputError(run, "the run's store names no training patients")
    return {str(p) for p in patients}


def phantom_truth(
    phantom: str | Path, prediction: str | Path, run: str | Path | None = None
) -> list[StudyTruth]:
    """Every predicted study of a phantom patient, with the patient's true volumes and EF;
    with ``run``, whether the run's model trained on the patient."""
    manifest = read_manifest(phantom)
    truth = {entry["patient_id"]: entry for entry in manifest["patients"]}
    trained = None if run is None else trained_patients(run)
    rows = []
    for summary in summaries(Path(prediction)):
        study = summary.get("study", {})
        entry = truth.get(study.get("patient_id"))
        if entry is None:
            continue
        quality = summary.get("quality") or {}
        # the run's store names patients as the dataset reader does (the Sunnybrook-style id)
        names = {entry["patient_id"], entry.get("original_id")}
        rows.append(
            StudyTruth(
                study=str(study.get("name")),
                patient_id=entry["patient_id"],
                group=entry["group"],
                true_ef=float(entry.get("label_ejection_fraction", entry["ejection_fraction"])),
                predicted_ef=summary.get("ef"),
                trusted=quality.get("ef_trusted"),
                true_edv_ml=entry.get("label_edv_ml"),
                true_esv_ml=entry.get("label_esv_ml"),
                predicted_edv_ml=summary.get("edv_ml"),
                predicted_esv_ml=summary.get("esv_ml"),
                held_out=None if trained is None else not (names & trained),
            )
        )
    if not rows:
        raise InvalidInputError(prediction, f"no predicted study is a patient of {phantom}")
    return rows
