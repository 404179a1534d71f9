"""A prediction of the phantom against the phantom's truth: what ``make demo`` ends with.

The phantom knows every patient's true ejection fraction (``phantom.json``, from the generator's
cavity volumes). ``lvseg predict`` over the phantom's studies measures one per study from its
masks (disc summation); :func:`phantom_truth` pairs them by patient id, so a user sees at once
whether the trained model measures hearts it never saw as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lvseg.data.errors import InvalidInputError
from lvseg.data.phantom import read_manifest
from lvseg.deploy.predict import SUMMARY_FILE

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


def phantom_truth(phantom: str | Path, prediction: str | Path) -> list[StudyTruth]:
    """Every predicted study of a phantom patient, with the patient's true EF."""
    manifest = read_manifest(phantom)
    truth = {entry["patient_id"]: entry for entry in manifest["patients"]}
    rows = []
    for summary in summaries(Path(prediction)):
        study = summary.get("study", {})
        entry = truth.get(study.get("patient_id"))
        if entry is None:
            continue
        quality = summary.get("quality") or {}
        rows.append(
            StudyTruth(
                study=str(study.get("name")),
                patient_id=entry["patient_id"],
                group=entry["group"],
                true_ef=float(entry["ejection_fraction"]),
                predicted_ef=summary.get("ef"),
                trusted=quality.get("ef_trusted"),
            )
        )
    if not rows:
        raise InvalidInputError(prediction, f"no predicted study is a patient of {phantom}")
    return rows
