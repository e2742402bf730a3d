"""The HTML building blocks of every report (run, sweep, compare-phases): one self-contained page
(style inline, images embedded as data URIs, no network), tables, folded sections, numbers."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:1.2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.3em}
h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
table.settings td{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}figure{margin:1em 0}
figcaption{color:#555;font-size:.92em}
pre,code{background:#f7f7f7;font-size:.9em}pre{padding:.8em;overflow:auto}
.verdict{font-size:1.05em;background:#f3f7fb;border-left:4px solid #0072B2;padding:.4em .9em}
.verdict p{margin:.45em 0}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em}
.ok{background:#e8f5e9;border-left:4px solid #2e7d32;padding:.5em .8em}
details{margin:1em 0}summary{cursor:pointer;font-weight:600}
"""


def html_page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>{STYLE}</style></head><body>\n{body}\n"
            "</body></html>\n")


def embed_image(path: Path, caption: str) -> str:
    """The PNG or GIF at `path` inline, with its caption; '' when the file does not exist."""
    if not path.is_file():
        return ""
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src='data:{mime};base64,{data}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def table(header: list[str] | None, rows: list[list[str]], cls: str = "") -> str:
    """An HTML table; cells are escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)  # fmt: skip
    attr = f" class='{cls}'" if cls else ""
    return f"<table{attr}>" + (f"<tr>{head}</tr>" if head else "") + body + "</table>"


def folded(summary: str, body: str) -> str:
    """A section folded under a one-line summary (settings, files, reproduction)."""
    return f"<details><summary>{html.escape(summary)}</summary>\n{body}\n</details>"


def code(command: str) -> str:
    return f"<code>{html.escape(command)}</code>"


def num(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ints with thousands separators, floats to `digits`, else —."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


def value(item: Any) -> str:
    """A setting for a table cell: lists joined, floats short, large ints separated, None —."""
    if item is None:
        return "—"
    if isinstance(item, list | tuple):
        return ", ".join(value(v) for v in item)
    if isinstance(item, float):
        return f"{item:g}"
    if isinstance(item, int) and not isinstance(item, bool):
        return f"{item:,}" if abs(item) >= 10_000 else str(item)
    return str(item)
