"""Pictures of explanations: one PNG panel per slice, and an ``index.html`` that shows them all.

A panel puts side by side what a reader needs to judge one prediction: the input crop; the crop
with the predicted LV contour (and the reference contour where one exists); one overlay per
explanation (CAM, Grad-CAM at each requested layer), each with its colour bar; and optionally the
strongest activation maps of one layer as small multiples. Colour scales follow the sign of the
map: CAM (``S_lv - S_bg``) is signed, so it uses a diverging map centred on zero (red: LV
evidence, blue: background evidence); Grad-CAM is non-negative, so it uses a sequential map from
zero.

The index page is self-contained (inline CSS, no scripts, no external resources) and links the
panels by relative paths only, so the output folder can be moved, zipped or served as it is.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg), never through pyplot, so
rendering keeps no global state and needs no display. Every file is written atomically.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lvseg import atomic
from lvseg.figures import PREDICTION_COLOUR, REFERENCE_COLOUR, display_range, draw_contour
from lvseg.formatting import number_text

SIGNED_COLORMAP = "RdBu_r"
"""Diverging, for maps whose sign means something (CAM: LV versus background evidence)."""
POSITIVE_COLORMAP = "inferno"
"""Sequential, for maps that are >= 0 (Grad-CAM after its ReLU)."""
GALLERY_COLORMAP = "viridis"
OVERLAY_ALPHA = 0.6
METHOD_TITLES = {"cam": "CAM", "gradcam": "Grad-CAM"}
SIGNED_METHODS = frozenset({"cam"})
INDEX_FILE = "index.html"


@dataclass
class Overlay:
    """One explanation map of a slice: ``values`` (H, W), same grid as the image."""

    method: str
    layer: str
    values: np.ndarray

    @property
    def signed(self) -> bool:
        return self.method in SIGNED_METHODS

    @property
    def label(self) -> str:
        return f"{METHOD_TITLES.get(self.method, self.method)} @ {self.layer}"


@dataclass
class Gallery:
    """The ``k`` strongest activation maps (k, h, w) of ``layer`` and their channel numbers."""

    layer: str
    maps: np.ndarray
    channels: Sequence[int]


@dataclass
class Panel:
    """Everything one slice's picture shows.

    ``image`` is the network's input crop (H, W); ``prediction`` and ``reference`` are boolean
    LV masks on the same grid (``reference`` None where the source has no LV label).
    """

    image: np.ndarray
    prediction: np.ndarray
    title: str
    reference: np.ndarray | None = None
    dice: float | None = None
    overlays: list[Overlay] = field(default_factory=list)
    gallery: Gallery | None = None


def colour_scale(overlay: Overlay) -> tuple[str, float, float]:
    """(colormap, vmin, vmax) of an overlay: signed maps get a diverging map symmetric about
    zero, non-negative maps a sequential one from zero to their maximum."""
    values = np.nan_to_num(np.asarray(overlay.values, np.float32))
    if overlay.signed:
        limit = float(np.abs(values).max()) if values.size else 0.0
        limit = limit or 1.0
        return SIGNED_COLORMAP, -limit, limit
    top = float(values.max()) if values.size else 0.0
    return POSITIVE_COLORMAP, 0.0, top if top > 0 else 1.0


def _overlay(figure, axis, image: np.ndarray, overlay: Overlay) -> None:
    """Grey image, the map blended over it, and a colour bar in the map's own units."""
    low, high = display_range(image)
    axis.imshow(image, cmap="gray", vmin=low, vmax=high)
    cmap, vmin, vmax = colour_scale(overlay)
    values = np.nan_to_num(np.asarray(overlay.values, np.float32))
    shown = axis.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, alpha=OVERLAY_ALPHA)
    # an inset colour bar: the overlay keeps the same size as the other images of the row
    bar = figure.colorbar(shown, cax=axis.inset_axes((1.03, 0.0, 0.05, 1.0)))
    bar.ax.tick_params(labelsize=6)
    bar.solids.set_alpha(1.0)
    axis.set_title(overlay.label, fontsize=8)


def render_panel(panel: Panel, path: str | Path, dpi: int = 100) -> Path:
    """Draw one slice's panel (see the module docstring) and save it as a PNG, atomically."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    top = 2 + len(panel.overlays)
    gallery = panel.gallery
    count = 0 if gallery is None else len(gallery.maps)
    gallery_columns = min(max(count, 1), max(top * 2, 4))
    gallery_rows = math.ceil(count / gallery_columns) if count else 0
    cell = 2.6
    small = top * cell / gallery_columns * 0.62  # gallery cell height, from the figure width
    height = cell + 0.5 + (gallery_rows * small + 0.35 if count else 0)
    figure = Figure(figsize=(top * cell, height))
    main_bottom = 1 - (cell + 0.25) / height
    main = figure.add_gridspec(
        1, top, left=0.02, right=0.95, top=1 - 0.35 / height, bottom=main_bottom, wspace=0.3
    )
    axes = [figure.add_subplot(main[0, i]) for i in range(top)]
    low, high = display_range(panel.image)

    axes[0].imshow(panel.image, cmap="gray", vmin=low, vmax=high)
    axes[0].set_title("input", fontsize=8)

    axes[1].imshow(panel.image, cmap="gray", vmin=low, vmax=high)
    handles = [Line2D([], [], color=PREDICTION_COLOUR, label="predicted LV")]
    draw_contour(axes[1], panel.prediction, PREDICTION_COLOUR)
    if panel.reference is not None:
        draw_contour(axes[1], panel.reference, REFERENCE_COLOUR)
        handles.append(Line2D([], [], color=REFERENCE_COLOUR, label="reference LV"))
    axes[1].legend(handles=handles, loc="lower left", fontsize=6, framealpha=0.7)
    dice = "" if panel.dice is None else f" (Dice {panel.dice:.3f})"
    axes[1].set_title(f"prediction{dice}", fontsize=8)

    for axis, overlay in zip(axes[2:], panel.overlays, strict=True):
        _overlay(figure, axis, panel.image, overlay)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])

    if gallery is not None and count:
        grid = figure.add_gridspec(
            gallery_rows,
            gallery_columns,
            left=0.02,
            right=0.97,
            top=main_bottom - 0.3 / height,
            bottom=0.02,
            wspace=0.06,
            hspace=0.25,
        )
        for i, (maps, channel) in enumerate(zip(gallery.maps, gallery.channels, strict=True)):
            axis = figure.add_subplot(grid[i // gallery_columns, i % gallery_columns])
            axis.imshow(maps, cmap=GALLERY_COLORMAP, interpolation="nearest")
            axis.set_title(f"ch {int(channel)}", fontsize=6, pad=2)
            axis.set_xticks([])
            axis.set_yticks([])
        figure.text(
            0.02,
            main_bottom - 0.08 / height,
            f"strongest activations of {gallery.layer} (each on its own scale)",
            fontsize=7,
            va="top",
        )
    figure.suptitle(panel.title, fontsize=9, y=1 - 0.05 / height, va="top")
    path = Path(path)
    atomic.write_with(path, lambda temporary: figure.savefig(temporary, format="png", dpi=dpi))
    return path


# ------------------------------------------------------------------------------ index page


@dataclass
class IndexEntry:
    """One slice on the index page: its panel (a path relative to the page) and its caption.

    ``measures`` maps an explanation label (e.g. ``"cam@head"``) to its measures of this slice
    (``energy_inside``, ``pointing_hit``, ``deletion_auc``, ...); empty without ``--metrics``.
    """

    panel: str
    patient_id: str
    slice_index: int | None = None
    phase: str | None = None
    dice: float | None = None
    key: str = ""
    source: str = ""
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)


MEASURE_LABELS = {
    "slices_with_reference": "slices (localisation)",
    "energy_inside": "energy in LV",
    "pointing_hit": "pointing hit",
    "pointing_accuracy": "pointing accuracy",
    "slices": "slices (deletion/insertion)",
    "deletion_auc": "deletion AUC",
    "insertion_auc": "insertion AUC",
    "random_deletion_auc": "random deletion AUC",
    "random_insertion_auc": "random insertion AUC",
    "deletion_gain": "deletion gain",
    "insertion_gain": "insertion gain",
    "deletion_win_rate": "deletion wins",
    "insertion_win_rate": "insertion wins",
}
"""Readable names of the measures (keys of ``metrics.json``) for captions and tables."""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #1c1c1e; background: #fafafa; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
.panels { display: flex; flex-direction: column; gap: 1.2em; }
figure { margin: 0; background: white; border: 1px solid #ddd; padding: 0.5em; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; margin-top: 0.3em; }
figcaption ul { margin: 0.2em 0; padding-left: 1.2em; }
"""


def _caption(entry: IndexEntry) -> str:
    slice_name = "-" if entry.slice_index is None else str(entry.slice_index)
    parts = [
        f"patient <b>{html.escape(entry.patient_id)}</b>",
        f"slice {html.escape(slice_name)}",
        f"phase {html.escape(entry.phase or '-')}",
        "Dice " + ("- (no reference)" if entry.dice is None else f"{entry.dice:.3f}"),
    ]
    text = " &middot; ".join(parts)
    if entry.measures:
        items = []
        for label, measures in entry.measures.items():
            values = ", ".join(
                f"{html.escape(MEASURE_LABELS.get(name, name))} {number_text(value)}"
                for name, value in measures.items()
                if name not in ("method", "layer")
            )
            items.append(f"<li>{html.escape(label)}: {values}</li>")
        text += "<ul>" + "".join(items) + "</ul>"
    return text


def _digits(name: str) -> int:
    return 0 if name.startswith("slices") else 3


def _summary_table(metrics: Mapping[str, Any]) -> str:
    """The means of every measure per explanation, and the sanity check where it ran."""
    means = metrics.get("means", {})
    with_reference = means.get("slices_with_reference", 0)
    parts = [
        f"<p>Mean Dice {number_text(means.get('dice'))} over {with_reference} "
        f"slices with a reference LV, of {means.get('slices', 0)} slices.</p>"
    ]
    explanations = means.get("explanations", {})
    names: list[str] = []
    for values in explanations.values():
        names.extend(n for n in values if n not in names)
    if explanations:
        header = "".join(f"<th>{html.escape(MEASURE_LABELS.get(n, n))}</th>" for n in names)
        rows = [f"<tr><th>explanation</th>{header}</tr>"]
        for label, values in explanations.items():
            cells = "".join(f"<td>{number_text(values.get(n), _digits(n))}</td>" for n in names)
            rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
        parts.append("<table class='means'>" + "".join(rows) + "</table>")
    sanity = {k: v for k, v in (metrics.get("sanity") or {}).items() if v.get("layers")}
    if sanity:
        count = max(result.get("slices", 0) for result in sanity.values())
        parts.append(
            f"<p class='note'>Sanity check (Adebayo et al. 2018) on {count} slices: the layers "
            "are re-initialised one by one from the output back (each row adds one); a map that "
            "depends on the learned weights changes, so its rank correlation (Spearman) and "
            "structural similarity (SSIM) with the trained model's map should fall.</p>"
        )
        header = "".join(
            f"<th>{html.escape(label)} Spearman</th><th>{html.escape(label)} SSIM</th>"
            for label in sanity
        )
        rows = [f"<tr><th>randomised down to</th>{header}</tr>"]
        layers = next(iter(sanity.values()))["layers"]
        for i, layer in enumerate(layers):
            cells = "".join(
                f"<td>{number_text(_at(result['spearman'], i))}</td>"
                f"<td>{number_text(_at(result['ssim'], i))}</td>"
                for result in sanity.values()
            )
            rows.append(f"<tr><td>{html.escape(str(layer))}</td>{cells}</tr>")
        parts.append("<table class='sanity'>" + "".join(rows) + "</table>")
    return "\n".join(parts)


def _at(values: Sequence[Any], index: int) -> Any:
    return values[index] if index < len(values) else None


def _check_relative(link: str) -> str:
    if (
        not link
        or Path(link).is_absolute()
        or "://" in link
        or link.startswith("//")
        or ".." in Path(link).parts
    ):
        raise ValueError(f"index links must be relative paths inside the folder, got {link!r}")
    return link


def write_index(
    out_dir: str | Path,
    entries: Sequence[IndexEntry],
    title: str,
    metrics: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write ``out_dir/index.html``: a summary (with ``metrics``) and every panel with a caption.

    Panels are linked by their relative paths (checked: absolute or remote links raise
    ``ValueError``); the page has inline CSS only. ``metrics`` is the ``metrics.json`` content
    (its ``means`` and ``sanity`` give the summary tables); ``notes`` are lines shown under the
    title (inputs, model, colour legend).
    """
    out_dir = Path(out_dir)
    body = [f"<h1>{html.escape(title)}</h1>"]
    body.extend(f"<p class='note'>{html.escape(note)}</p>" for note in notes)
    if metrics is not None:
        body.append("<h2>Summary</h2>")
        body.append(_summary_table(metrics))
        body.append("<p class='note'>Raw numbers: <a href='metrics.json'>metrics.json</a>.</p>")
    body.append(f"<h2>Slices ({len(entries)})</h2>")
    body.append("<div class='panels'>")
    for entry in entries:
        link = html.escape(_check_relative(entry.panel), quote=True)
        alt = html.escape(entry.key or entry.panel, quote=True)
        body.append(
            f"<figure id='{alt}'><a href='{link}'><img src='{link}' alt='{alt}' loading='lazy'>"
            f"</a><figcaption>{_caption(entry)}</figcaption></figure>"
        )
    body.append("</div>")
    page = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    path = out_dir / INDEX_FILE
    atomic.write_text(path, page)
    return path
