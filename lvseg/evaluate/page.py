"""The building blocks of lvseg's self-contained HTML pages (the evaluation report and the
comparison page): inline CSS, tables of escaped text, notes, figure links.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from lvseg.formatting import is_finite_number, number_text

FIGURES_FOLDER = "figures"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #1c1c1e; background: #fafafa; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; } h3 { font-size: 1em; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
p.warning { color: #8a4b00; background: #fff4e0; padding: 0.4em 0.6em; max-width: 60em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
table.facts th { text-align: left; font-weight: normal; background: #f3f3f3; }
table.facts td { text-align: left; max-width: 60em; }
tr.published td { font-style: italic; color: #555; }
.grid { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure { margin: 0 0 1em; background: white; border: 1px solid #ddd; padding: 0.5em;
         width: fit-content; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; margin-top: 0.3em; max-width: 40em; }
dl { max-width: 60em; font-size: 0.9em; } dt { font-weight: bold; margin-top: 0.5em; }
"""
"""Inline CSS shared by the report and the comparison page (same look as the explain index)."""


def with_units(value: Any, units: str, digits: int = 2) -> str:
    """A distance or volume with its units; None as "-" (no units on a missing value)."""
    text = number_text(value, digits)
    return text if text == "-" else f"{text} {units}"


def count(value: Any) -> str:
    """An integer with thousands separators (parameters)."""
    return f"{int(value):,}" if is_finite_number(value) else "-"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], css_class: str = "") -> str:
    """An HTML table of plain-text cells (escaped here)."""
    head = "".join(f"<th>{html.escape(str(title))}</th>" for title in header)
    body = [
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    ]
    attribute = f" class='{html.escape(css_class, quote=True)}'" if css_class else ""
    return f"<table{attribute}><tr>{head}</tr>" + "".join(body) + "</table>"


def facts(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of (name, value) facts, values printed with
    :func:`~lvseg.formatting.number_text`."""
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(number_text(value))}</td></tr>"
        for name, value in pairs
    )
    return f"<table class='facts'>{rows}</table>"


def note(text: str, css_class: str = "note") -> str:
    return f"<p class='{css_class}'>{html.escape(text)}</p>"


def html_page(title: str, body: Sequence[str]) -> str:
    """A complete self-contained page: inline CSS, no scripts."""
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def figure(name: str, alt: str, caption: str) -> str:
    """A figure of the page's ``figures/`` folder, linked to itself, with its caption."""
    link = html.escape(f"{FIGURES_FOLDER}/{name}", quote=True)
    return (
        f"<figure><a href='{link}'><img src='{link}' alt='{html.escape(alt, quote=True)}'></a>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
