"""HTML building blocks of the report (:mod:`analysis.report`): the stylesheet, tables, and a page writer whose
figures are drawn later, in parallel and cached (:mod:`analysis.figure_jobs`)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.figure_jobs import FigureJob

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0 1.2em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f1f1f1; }
caption { caption-side: top; text-align: left; font-size: 13px; color: #444; padding-bottom: 4px; }
figure { margin: 1em 0 2em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #444; }
.meta td, .meta th { text-align: left; }
.toc { columns: 2; }
.note { color: #555; font-size: 14px; }
.warning { background: #fff4e5; border: 1px solid #f0a040; padding: .6em 1em; margin: 1em 0; }
.answer { background: #eef6ee; border: 1px solid #8c8; padding: .6em 1em; margin: 1em 0; }
tr.best td { font-weight: bold; }
"""


def slug(*parts: object) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join(str(p) for p in parts if p not in ("", None))).strip("-")


def table_html(df: pd.DataFrame, caption: str | None = None, float_format: Any = None) -> str:
    flat = df.rename_axis(columns=None)
    if flat.index.name is not None:
        flat = flat.reset_index()
    out = flat.to_html(na_rep="–", float_format=float_format, border=0, escape=True, index=False)
    if caption:
        out = out.replace(">\n", f">\n  <caption>{html.escape(caption)}</caption>\n", 1)
    return out


def ordered(values: Iterable[Any]) -> list:
    return list(dict.fromkeys(values))


class Writer:
    """Collects the HTML parts of one page; its figures become :class:`FigureJob` s in the shared ``jobs`` list and
    are rendered once drawn (a figure whose drawing failed becomes a note)."""

    def __init__(self, out_dir: Path, dpi: int, jobs: list[FigureJob]):
        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.dpi = dpi
        self.jobs = jobs
        self.parts: list[Any] = []
        self.toc: list[tuple[str, str]] = []

    def h(self, level: int, text: str, anchor: str | None = None) -> None:
        if anchor:
            self.toc.append((anchor, text))
        a = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")

    def p(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, function: str, args: tuple, name: str, caption: str, **kwargs: Any) -> None:
        """A figure ``function(*args, **kwargs)`` (a name of :mod:`analysis.figure_jobs`) saved as ``name``.png."""
        job = FigureJob(function, args, self.fig_dir / f"{name}.png", kwargs, self.dpi)
        self.jobs.append(job)
        self.parts.append((job.path, caption))

    def render(self, title: str, errors: dict[str, str]) -> tuple[str, list[Path]]:
        """The page's HTML and the figure files it shows."""
        toc = (
            '<ul class="toc">'
            + "".join(f'<li><a href="#{html.escape(a)}">{html.escape(t)}</a></li>' for a, t in self.toc)
            + "</ul>"
        )
        body, shown = [], []
        for part in self.parts:
            if isinstance(part, tuple):
                path, caption = part
                if str(path) in errors:
                    body.append(f'<p class="note">{html.escape(errors[str(path)])}</p>')
                    continue
                shown.append(path)
                rel = path.relative_to(self.out_dir).as_posix()
                body.append(
                    f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
            else:
                body.append(toc if part == "<!--TOC-->" else part)
        page = (
            f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body)
            + "\n</body>\n</html>\n"
        )
        return page, shown
