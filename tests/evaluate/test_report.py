"""The evaluation report and the comparison page: behaviour (links, units, sections), not pixels."""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from lvseg.evaluate import compare, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def disc(size: int = 48, radius: float = 10.0, shift: float = 0.0) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return (rows - size / 2) ** 2 + (cols - size / 2 - shift) ** 2 <= radius**2


def stats(slices: int, dice: float) -> dict:
    return {
        "slices": slices,
        "dice_mean": dice,
        "dice_std": 0.05,
        "dice_median": dice,
        "iou_mean": dice - 0.08,
        "hd95_mm_mean": 4.2,
        "apd_mm_mean": 1.9,
        "good_contour_rate_5mm": 0.9,
    }


def good(slices: int) -> dict:
    return {
        "slices": slices,
        "dice_mean": 0.93,
        "apd_mm_mean": 1.7,
        "hd95_mm_mean": 3.9,
        "assd_mm_mean": 1.2,
    }


def clinical_section(volume_units: str = "ml") -> dict:
    def stack(scale: float) -> dict:
        return {
            "positions": [0, 1, 2, 3],
            "reference_area": [900.0 * scale, 1100.0 * scale, 800.0 * scale, 300.0 * scale],
            "predicted_area": [850.0 * scale, 1150.0 * scale, 760.0 * scale, None],
        }

    patients = [
        {
            "patient_id": f"P{i}",
            "slice_spacing_mm": 10.0,
            "reference": {
                "edv": 140.0 + i,
                "esv": 60.0 + i,
                "sv": 80.0,
                "ef": 0.57,
                "mass_g": None,
            },
            "predicted": {
                "edv": 135.0 + i,
                "esv": 64.0,
                "sv": 71.0 + i,
                "ef": 0.53,
                "mass_g": None,
            },
            "stack": {"ED": stack(1.0), "ES": stack(0.6)},
        }
        for i in (3, 4)
    ]
    agreement = {
        "n": 2,
        "bias": -4.5,
        "sd": 0.7,
        "loa_low": -5.9,
        "loa_high": -3.1,
        "pearson_r": None,
        "mean_abs_diff": 4.5,
    }
    ef = {  # EF is a fraction, so are its differences
        "n": 2,
        "bias": -0.04,
        "sd": 0.0,
        "loa_low": -0.04,
        "loa_high": -0.04,
        "pearson_r": None,
        "mean_abs_diff": 0.04,
    }
    return {
        "volume_units": volume_units,
        "note": "Volumes by summing slice areas times the slice spacing.",
        "patients": patients,
        "agreement": {
            "edv": agreement,
            "esv": agreement,
            "sv": None,
            "ef": ef,
            "mass_g": None,
        },
        "skipped": [{"patient_id": "P5", "reason": "no ES phase labelled"}],
    }


def make_metrics(clinical: dict | None = None, distance_units: str = "mm") -> dict:
    return {
        "lvseg_version": "0.1.0",
        "created": "2026-11-27T10:00:00Z",
        "model": {
            "name": "lvnet",
            "source": "runs/x/checkpoints/best.pt",
            "parameters": 231716,
            "size_mb_fp32": 0.93,
            "train_patients": ["P1"],
            "val_patients": ["P2"],
            "train_data": "data/train",
        },
        "data": {
            "path": "data/test",
            "format": "folders",
            "split": "held-out",
            "split_note": "Patients not seen in training.",
            "patients": ["P3", "P4"],
            "excluded_patients": ["P1", "P2"],
            "distance_units": distance_units,
            "spacing_note": "The PNG slices carry no pixel spacing."
            if distance_units == "px"
            else None,
        },
        "settings": {
            "good_contour_mm": [5.0, 4.0],
            "geometry": "Crops of 128 px.",
            "prediction": "Threshold 0.5.",
        },
        "summary": {
            "slices": 6,
            "patients": 2,
            "dice_mean": 0.912,
            "dice_median": 0.934,
            "dice_std": 0.061,
            "iou_mean": 0.84,
            "precision_mean": 0.9,
            "recall_mean": 0.93,
            "pixel_accuracy": 0.997,
            "background_only_accuracy": 0.981,
            "hd95_mm_mean": None,
            "assd_mm_mean": 1.31,
            "apd_mm_mean": 1.87,
            "good_contour_rate_5mm": 0.833,
            "good_contour_rate_4mm": 0.667,
            "detection_rate": 1.0,
            "false_positive_slices": 0,
            "good_contours_5mm": good(5),
            "good_contours_4mm": good(4),
        },
        "patients": [
            {
                "patient_id": pid,
                "group": group,
                "slices": 3,
                "dice_mean": 0.9,
                "dice_median": 0.92,
                "iou_mean": 0.83,
                "hd95_mm_mean": 4.0,
                "apd_mm_mean": None,
                "good_contour_rate_5mm": 0.67,
                "good_contour_rate_4mm": 0.33,
                "detection_rate": 1.0,
            }
            for pid, group in (("P3", "HF-I"), ("P4", "N"))
        ],
        "breakdowns": {
            "position": {"basal": stats(2, 0.85), "mid": stats(2, 0.95), "apical": stats(2, 0.8)},
            "phase": {"ED": stats(3, 0.93), "ES": stats(3, 0.89)},
            "group": {},
        },
        "clinical": clinical,
        "explanations": {
            "source": "explain/metrics.json",
            "means": {"cam@head": {"energy_inside": 0.71, "pointing_accuracy": 0.9, "label": "x"}},
        },
    }


def make_rows() -> list[dict]:
    rows = []
    for pid, group in (("P3", "HF-I"), ("P4", "N")):
        for index, (position, dice) in enumerate((("basal", 0.8), ("mid", 0.95), ("apical", 0.6))):
            for phase_index, phase in ((0, "ED"), (8, "ES")):
                rows.append(
                    {
                        "key": f"{pid}/s{index}/p{phase_index}",
                        "patient_id": pid,
                        "group": group,
                        "slice_index": index,
                        "phase_index": phase_index,
                        "phase": phase,
                        "position": position,
                        "dice": dice - 0.05 * phase_index / 8,
                        "apd": 1.5,
                    }
                )
    rows.append({"key": "P4/s9/p0", "patient_id": "P4", "group": "N", "dice": None})
    return rows


def make_worst() -> list[report.SliceView]:
    image = np.random.default_rng(0).normal(size=(48, 48)) * 50 + 300 * disc(radius=12)
    return [
        report.SliceView("P3/s2/p8", "P3 apical ES", image, disc(), disc(shift=4), 0.71, 2.4),
        report.SliceView(
            "P4/s2/p8", "P4 apical ES", image, disc(), np.zeros((48, 48), bool), 0.0, None
        ),  # fmt: skip
        report.SliceView("<b>P4</b>/s0/p0", "P4 basal ED", image, disc(), disc(9), 0.9, 1.1),
    ]


class Page(HTMLParser):
    """Links, tags, headings and tables (rows of cell texts) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.tags: set[str] = set()
        self.headings: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._heading: str | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attributes = dict(attrs)
        self.links.extend(v for n, v in attrs if n in ("src", "href") and v)
        if tag == "img":
            self.images.append(attributes["src"])
        elif tag in ("h1", "h2", "h3"):
            self._heading = ""
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append(self._heading)
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data
        if self._cell is not None:
            self._cell += data

    def row(self, first_cell: str, header: str | None = None) -> list[str]:
        """The first table row whose first cell is ``first_cell`` (in a table whose first row has
        a cell ``header``, where given)."""
        for table in self.tables:
            if header is not None and header not in table[0]:
                continue
            for row in table:
                if row and row[0] == first_cell:
                    return row
        raise AssertionError(f"no row {first_cell!r} in {self.tables}")


def write(tmp_path: Path, metrics: dict) -> tuple[Path, str, Page]:
    path = report.write_report(tmp_path, metrics, make_rows(), make_worst())
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    return path, text, page


@pytest.mark.parametrize("clinical", [None, clinical_section()], ids=["no-clinical", "clinical"])
def test_the_report_is_self_contained_and_links_its_figures_relatively(tmp_path, clinical):
    path, text, page = write(tmp_path, make_metrics(clinical))

    assert path == tmp_path / report.REPORT_FILE and path.is_file()
    assert page.images
    for link in page.images:
        assert not Path(link).is_absolute() and ":" not in link and ".." not in Path(link).parts
        assert link.startswith(f"{report.FIGURES_FOLDER}/")
        assert (tmp_path / link).read_bytes()[:8] == PNG_MAGIC
    assert all((tmp_path / link).is_file() for link in page.links)
    assert "http://" not in text and "https://" not in text
    assert not page.tags & {"script", "link", "iframe"}
    names = {Path(link).name for link in page.images}
    assert {"dice_per_patient.png", "dice_by_position_phase.png"} <= names
    assert {"worst_01.png", "worst_02.png", "worst_03.png"} <= names
    # atomic writes leave no temporary files behind
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    # text is escaped
    assert "<b>P4</b>" not in text and "&lt;b&gt;P4&lt;/b&gt;" in text


def test_the_summary_puts_pixel_accuracy_beside_the_background_only_accuracy(tmp_path):
    _, text, page = write(tmp_path, make_metrics())

    assert page.row("pixel accuracy")[1:] == ["99.70%", "all-background: 98.10%"]
    assert "98%" in text  # the sentence saying why
    assert page.row("Dice mean ± SD")[1] == "0.912 ± 0.061"
    assert page.row("APD mean (mm)")[1] == "1.87 mm"
    assert page.row("good contours (APD < 5 mm)")[1] == "83.3%"
    assert page.row("APD < 4 mm")[1:3] == ["4", "0.930"]  # the good-contours-only table
    assert "flatters" in text
    assert page.row("cam@head")[1:] == ["0.710", "0.900"]  # explanation means, numeric only


def test_none_prints_as_a_dash(tmp_path):
    _, _, page = write(tmp_path, make_metrics())

    assert page.row("HD95 mean (mm)")[1] == "-"
    assert page.row("P3")[7] == "-"  # the patient's APD mean
    assert "None" not in "".join(cell for table in page.tables for row in table for cell in row)


def test_pixel_distances_are_labelled_px_and_say_why(tmp_path):
    _, text, page = write(tmp_path, make_metrics(distance_units="px"))

    assert page.row("APD mean (px)")[1] == "1.87 px"
    assert page.row("ASSD mean (px)")[1] == "1.31 px"
    assert page.row("good contours (APD < 5 mm)")  # the thresholds stay in mm, as defined
    assert "The PNG slices carry no pixel spacing." in text
    assert "Not defined: good contours are judged in mm" in text
    summary = next(t for t in page.tables if t[0][:2] == ["measure", "value"])
    distances = [row for row in summary if row[0].startswith(("HD95", "ASSD", "APD"))]
    assert distances and not any("mm" in cell for row in distances for cell in row)


def test_the_clinical_section_appears_only_when_present(tmp_path):
    _, _, without = write(tmp_path / "a", make_metrics())
    assert "Clinical measures" not in without.headings
    assert not any("bland_altman" in link for link in without.images)

    _, text, page = write(tmp_path / "b", make_metrics(clinical_section()))
    assert "Clinical measures" in page.headings
    images = {Path(link).name for link in page.images}
    assert {"bland_altman.png", "volume_curves.png"} <= images
    assert page.row("P3", "EDV ref (ml)")[:4] == [
        "P3",
        "10.00",
        "143.0",
        "138.0",
    ]  # EDV reference, predicted
    assert page.row("EF (% points)")[1:] == ["2", "-4.00", "0.00", "-4.00", "-4.00", "-", "4.00"]
    assert page.row("P5") == ["P5", "no ES phase labelled"]  # skipped, with the reason
    assert "Volumes by summing" in text


def test_relative_volumes_say_only_ef_is_meaningful(tmp_path):
    _, text, page = write(tmp_path, make_metrics(clinical_section("relative")))

    assert "Only the ejection fraction" in text
    assert any("EDV ref (relative)" in row for table in page.tables for row in table)


# ------------------------------------------------------------------------------ compare


def evaluations() -> list[tuple[str, dict]]:
    other = make_metrics(distance_units="px")
    other["summary"]["dice_mean"] = 0.88
    return [("lvnet", make_metrics()), ("unet | px", other)]


def test_compare_rows_add_the_published_figures_flagged(tmp_path):
    rows = compare.compare_rows(evaluations())

    assert [row["published"] for row in rows] == [False, False, True, True]
    assert rows[0]["label"] == "lvnet" and rows[0]["dice_mean"] == 0.912
    assert rows[0]["parameters"] == 231716 and rows[0]["slices"] == 6 and rows[0]["patients"] == 2
    assert rows[0]["good_5mm_dice_mean"] == 0.93
    assert rows[2]["dice_mean"] == 0.94 and rows[2]["apd_mm_mean"] == 1.81
    assert rows[3]["pixel_accuracy"] == 0.997 and rows[3]["hd95_mm_mean"] is None
    assert all(set(row) == set(rows[0]) for row in rows)
    assert len(compare.compare_rows(evaluations(), published=False)) == 2
    assert compare.PUBLISHED[0].get("published") is None  # the module's list is left unchanged


def test_compare_markdown_has_one_line_per_model():
    rows = compare.compare_rows(evaluations())
    lines = compare.compare_markdown(rows).strip().splitlines()

    assert len(lines) == 2 + len(rows)
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert lines[2].startswith("| lvnet |") and "unet \\| px" in lines[3]
    assert "px" in lines[3].split("unet")[1]  # distances measured in pixels say so
    assert all("published" in line and "(published) (published)" not in line for line in lines[4:])
    assert "| - |" in lines[5]  # a published row without HD95


def test_write_compare_writes_a_page_and_json_that_round_trips(tmp_path):
    snapshot = copy.deepcopy(evaluations())
    path = compare.write_compare(tmp_path, evaluations())

    assert path == tmp_path / compare.COMPARE_FILE
    data = json.loads((tmp_path / compare.COMPARE_JSON).read_text())
    assert data["rows"] == compare.compare_rows(snapshot)
    assert [c["key"] for c in data["columns"]][:2] == ["label", "parameters"]
    page = Page()
    text = path.read_text()
    page.feed(text)
    assert not page.tags & {"script", "link", "iframe"} and "http" not in text
    assert len(page.tables[0]) == 1 + 4
    assert "published" in text and "unet | px" in text
