"""One document, two renderings: markdown (figures as PNG files beside it) and a self-contained HTML page
(figures embedded as base64, inline CSS, no external resource), built from the same sequence of calls."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from hybridbatch.io import atomic_write


class Document:
    """Markdown and a self-contained HTML page built side by side; a figure is a PNG file in `figure_dir`
    for the markdown and a base64 image in the page (inline CSS, no external resource)."""

    def __init__(self, figure_dir: Path) -> None:
        self.figure_dir = figure_dir
        self.stems: set[str] = set()
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, level: int, text: str) -> None:
        self.md.append("#" * level + " " + text)
        self.html.append(f"<h{level}>{_inline(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.md.append(text)
        self.html.append(f"<p>{_inline(text)}</p>")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.md.append("\n".join(md_row(r) for r in [header, ["---"] * len(header), *rows]))
        body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
        head = "".join(f"<th>{_inline(c)}</th>" for c in header)
        self.html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, stem: str, png: bytes, caption: str) -> None:
        with atomic_write(self.figure_dir / f"{stem}.png", "wb") as handle:
            handle.write(png)
        self.stems.add(stem)
        self.md.append(f"![{caption}]({self.figure_dir.name}/{stem}.png)\n\n*{caption}*")
        data = base64.b64encode(png).decode("ascii")
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{_inline(caption)}</figcaption></figure>")

    def markdown(self) -> str:
        return "\n\n".join(self.md) + "\n"

    def page(self, title: str) -> str:
        head = f'<meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style>'
        return (f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head><body>\n' + "\n".join(self.html)
                + "\n</body></html>\n")


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text)))


def md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f0f0f0}"
        "figure{margin:1em 0}img{max-width:100%}figcaption{font-size:0.85em;color:#555}"
        "code{background:#f4f4f4;padding:0 3px}")
