"""Explanation pictures: panels (layout, colour scales, atomic writes) and the index page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builders import Links
from PIL import Image

from lvseg.explain import render


def disc(size: int = 32, radius: float = 6.0) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return (rows - size / 2) ** 2 + (cols - size / 2) ** 2 <= radius**2


def panel(overlays=(), gallery=None, reference=True) -> render.Panel:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(32, 32)).astype(np.float32) + 2 * disc()
    return render.Panel(
        image=image,
        prediction=disc(radius=5),
        reference=disc() if reference else None,
        dice=0.9 if reference else None,
        title="P1 slice 3 ED",
        overlays=list(overlays),
        gallery=gallery,
    )


def test_a_panel_has_one_column_per_overlay_and_a_gallery_row(tmp_path):
    cam = render.Overlay("cam", "head", np.linspace(-2, 1, 32 * 32).reshape(32, 32))
    grad = render.Overlay("gradcam", "decoder.3", np.linspace(0, 1, 32 * 32).reshape(32, 32))
    gallery = render.Gallery(
        "encoder.0", np.random.default_rng(1).random((4, 16, 16)), [3, 1, 0, 2]
    )

    plain = Image.open(render.render_panel(panel(), tmp_path / "plain.png"))
    both = Image.open(render.render_panel(panel([cam, grad]), tmp_path / "both.png"))
    shown = Image.open(render.render_panel(panel([cam], gallery), tmp_path / "gallery.png"))
    no_reference = render.render_panel(panel(reference=False), tmp_path / "unlabelled.png")

    assert plain.format == "PNG" and no_reference.is_file()
    assert both.width > plain.width  # input + prediction + two overlays
    assert shown.height > plain.height  # the gallery adds a row of small multiples
    # atomic writes leave no temporary files behind
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["both.png", "gallery.png", "plain.png", "unlabelled.png"]


def test_cam_is_centred_on_zero_and_gradcam_starts_at_zero():
    signed = render.Overlay("cam", "head", np.array([[-3.0, 1.0], [0.5, 0.0]]))
    positive = render.Overlay("gradcam", "layer", np.array([[0.0, 0.2], [0.4, 0.0]]))
    flat = render.Overlay("gradcam", "layer", np.zeros((2, 2)))

    assert render.colour_scale(signed) == (render.SIGNED_COLORMAP, -3.0, 3.0)
    colormap, low, high = render.colour_scale(positive)
    assert colormap == render.POSITIVE_COLORMAP and low == 0.0 and high == pytest.approx(0.4)
    assert render.colour_scale(flat)[1:] == (0.0, 1.0)  # a map of zeros still has a scale


def test_the_index_links_panels_relatively_and_escapes_captions(tmp_path):
    (tmp_path / "panels").mkdir()
    render.render_panel(panel(), tmp_path / "panels" / "a.png")
    render.render_panel(panel(reference=False), tmp_path / "panels" / "b.png")
    (tmp_path / "metrics.json").write_text("{}")
    entries = [
        render.IndexEntry(
            "panels/a.png", "<b>P1</b>", 3, "ED", 0.91, key="P1/s3/p0",
            measures={"cam@head": {"energy_inside": 0.8, "pointing_hit": True}},
        ),
        render.IndexEntry("panels/b.png", "P2", None, None, None, key="P2/s-/p-"),
    ]  # fmt: skip
    metrics = {
        "means": {
            "slices": 2,
            "slices_with_reference": 1,
            "dice": 0.91,
            "explanations": {"cam@head": {"slices": 1.0, "energy_inside": 0.8}},
        },
        "sanity": {
            "cam@head": {"slices": 1, "layers": ["(none)", "head"], "spearman": [1, 0.2],
                         "ssim": [1, 0.3]}
        },
    }  # fmt: skip
    page_path = render.write_index(tmp_path, entries, "lvnet <explained>", metrics)
    page = page_path.read_text()

    parser = Links()
    parser.feed(page)
    assert parser.links and all((tmp_path / link).is_file() for link in parser.links)
    assert not any(Path(link).is_absolute() or ":" in link for link in parser.links)
    assert not parser.tags & {"script", "link", "iframe"}  # self-contained: inline CSS only
    assert "&lt;b&gt;P1&lt;/b&gt;" in page and "<b>P1</b>" not in page
    assert "lvnet &lt;explained&gt;" in page
    assert "0.910" in page and "energy in LV 0.800" in page and "pointing hit yes" in page
    assert "no reference" in page  # the unlabelled slice says why it has no Dice
    assert "Spearman" in page and "0.200" in page  # the sanity table


@pytest.mark.parametrize("link", ["/tmp/a.png", "http://example.com/a.png", "../a.png"])
def test_the_index_refuses_links_outside_its_folder(tmp_path, link):
    with pytest.raises(ValueError, match="relative"):
        render.write_index(tmp_path, [render.IndexEntry(link, "P1")], "t")
    assert not (tmp_path / render.INDEX_FILE).exists()
