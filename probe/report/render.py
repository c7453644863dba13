"""A report's document model and its two renderings: Markdown and self-contained HTML.

Every string in the model is plain text: both renderers escape it, so a backbone or dataset name
can never inject markup.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """A table of plain-text cells with a note printed under it."""

    headers: tuple[str, ...]  # column headings
    rows: tuple[tuple[str, ...], ...]  # cells, one tuple per row, as many as headers
    note: str = ""  # one or two sentences explaining what the table shows


@dataclass(frozen=True)
class SectionFigure:
    """One figure of a section, as a file for the Markdown and as PNG bytes for the HTML."""

    path: str  # figure file relative to the report, linked from the Markdown
    png: bytes  # the same figure as PNG, embedded in the HTML
    alt: str  # alternative text
    caption: str = ""  # one line under the figure saying how it is arranged ("" none)


@dataclass(frozen=True)
class Section:
    """One dataset (and metric): its figures and its tables."""

    heading: str  # the dataset name
    figures: tuple[SectionFigure, ...]  # in reading order (none: a section of tables only)
    tables: tuple[tuple[str, Table], ...]  # (sub-heading, table) pairs


@dataclass(frozen=True)
class Document:
    """A whole report."""

    title: str  # top heading
    provenance: tuple[str, ...]  # lines saying what was reported, from what, when
    notes: tuple[str, ...]  # how to read the numbers
    sections: tuple[Section, ...]  # one per dataset


def render_markdown(doc: Document) -> str:
    """The report as GitHub-flavoured Markdown (figures linked by relative path)."""
    out = [f"# {_md(doc.title)}", ""]
    out += [f"- {_md(line)}" for line in doc.provenance]
    out += ["", *(_md(note) for note in doc.notes), ""]
    for section in doc.sections:
        out += [f"## {_md(section.heading)}", ""]
        for figure in section.figures:
            out += [f"![{_md(figure.alt)}]({figure.path})", ""]
            out += [f"*{_md(figure.caption)}*", ""] if figure.caption else []
        for heading, table in section.tables:
            out += [f"### {_md(heading)}", "", *_md_table(table), ""]
    return "\n".join(out).rstrip() + "\n"


def _md_table(table: Table) -> list[str]:
    lines = [_md_row(table.headers), "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += [_md_row(row) for row in table.rows]
    return [*lines, "", _md(table.note)] if table.note else lines


def _md_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def _md(text: str) -> str:
    """Plain text made inert in Markdown: no HTML tags, no table breaks, no link or emphasis syntax."""
    text = html.escape(text, quote=False)
    for ch in "\\`*|":
        text = text.replace(ch, "\\" + ch)
    return text.replace("](", "\\](")  # "[x](y)" would be a link; "[low, high]" stays readable


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #eee; }
ul.provenance { color: #555; font-size: .92rem; }
p.note { color: #555; font-size: .9rem; margin-top: .4rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .9rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .84rem; font-variant-numeric: tabular-nums; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: .2rem .45rem; text-align: right; overflow-wrap: anywhere; }
td { min-width: 4.5rem; }  /* "0.712 [0.638, 0.787] n=5" wraps after the mean instead of widening the page */
th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
"""


def render_html(doc: Document) -> str:
    """The report as one HTML file that needs nothing else: inline CSS, figures as base64 PNG data URIs."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(doc.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(doc.title)}</h1>",
        '<ul class="provenance">',
        *(f"<li>{e(line)}</li>" for line in doc.provenance),
        "</ul>",
        *(f'<p class="note">{e(note)}</p>' for note in doc.notes),
    ]
    for section in doc.sections:
        out += [f"<section><h2>{e(section.heading)}</h2>", *(_html_figure(f) for f in section.figures)]
        for heading, table in section.tables:
            out += [f"<h3>{e(heading)}</h3>", _html_table(table)]
        out.append("</section>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _html_figure(figure: SectionFigure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    alt = html.escape(figure.alt)
    caption = f"<figcaption>{html.escape(figure.caption)}</figcaption>" if figure.caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">{caption}</figure>'


def _html_table(table: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in table.headers)
    body = "\n".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    note = f'<p class="note">{e(table.note)}</p>' if table.note else ""
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>{note}'
    )
