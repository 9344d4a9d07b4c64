"""Render report blocks (:mod:`hessbench.report.blocks`) as Markdown and as one
self-contained HTML page.

HTML goes through a Jinja2 template (autoescaped) with the inline Markdown of each text
rendered by markdown-it-py (CommonMark), figures embedded as base64 PNG; rows flagged in a
table's ``highlight`` get the class ``winner``.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hessbench.report.blocks import (Block, BulletList, CodeBlock, Figure, Heading, Paragraph,
                                     Table)
from hessbench.report.extras import require


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in table.header) + " |",
             "|---" * len(table.header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Table):
            out.append(markdown_table(block))
        elif isinstance(block, BulletList):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, CodeBlock):
            out.append(f"```{block.language}\n{block.text}\n```")
        elif isinstance(block, Figure):
            out.append(f"![{block.alt}](figures/{Path(block.path).name})")
        else:
            raise TypeError(f"not a report block: {block!r}")
        out.append("")
    return "\n".join(out)


CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;
 max-width:1500px;margin:2em auto;padding:0 1.5em;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.4em;font-size:0.92em}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f2f2f2} tr.winner td{background:#e8f5e9}
code{background:#f4f4f4;padding:1px 4px;border-radius:3px}
pre{background:#f4f4f4;padding:0.8em;overflow-x:auto}
img{max-width:100%;height:auto;border:1px solid #eee}
h2{border-bottom:1px solid #ddd;padding-bottom:0.2em;margin-top:1.8em}
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ css }}</style></head><body>
{% for b in blocks %}
{%- if b.kind == "heading" %}<h{{ b.level }}>{{ b.text | inline }}</h{{ b.level }}>
{%- elif b.kind == "paragraph" %}<p>{{ b.text | inline }}</p>
{%- elif b.kind == "list" %}<ul>{% for item in b.entries %}<li>{{ item | inline }}</li>{% endfor %}</ul>
{%- elif b.kind == "code" %}<pre><code>{{ b.text }}</code></pre>
{%- elif b.kind == "figure" %}<figure><img alt="{{ b.alt }}" src="data:image/png;base64,{{ b.data }}"></figure>
{%- elif b.kind == "table" %}<table><thead><tr>{% for h in b.header %}<th>{{ h | inline }}</th>{% endfor %}</tr></thead><tbody>
{%- for row, hi in b.rows %}<tr{% if hi %} class="winner"{% endif %}>{% for c in row %}<td>{{ c | inline }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
{%- endif %}
{% endfor %}</body></html>
"""

@functools.cache
def _page() -> Any:
    """The compiled page template (Jinja2 and markdown-it-py are imported only for HTML)."""
    Environment = require("jinja2").Environment
    MarkdownIt = require("markdown_it").MarkdownIt
    Markup = require("markupsafe").Markup

    inline = MarkdownIt("commonmark", {"html": False})  # raw HTML is escaped
    env = Environment(autoescape=True, keep_trailing_newline=True)
    env.filters["inline"] = lambda text: Markup(inline.renderInline(str(text)))
    return env.from_string(PAGE)


def _context(block: Block) -> dict[str, Any]:
    if isinstance(block, Heading):
        return {"kind": "heading", "level": block.level, "text": block.text}
    if isinstance(block, Paragraph):
        return {"kind": "paragraph", "text": block.text}
    if isinstance(block, BulletList):
        return {"kind": "list", "entries": block.items}
    if isinstance(block, CodeBlock):
        return {"kind": "code", "text": block.text}
    if isinstance(block, Figure):
        data = base64.b64encode(Path(block.path).read_bytes()).decode("ascii")
        return {"kind": "figure", "alt": block.alt, "data": data}
    if isinstance(block, Table):
        return {"kind": "table", "header": block.header,
                "rows": [(row, block.highlighted(i)) for i, row in enumerate(block.rows)]}
    raise TypeError(f"not a report block: {block!r}")


def render_html(blocks: Sequence[Block], title: str) -> str:
    """One self-contained HTML page (figures embedded)."""
    Markup = require("markupsafe").Markup

    return _page().render(title=title, css=Markup(CSS), blocks=[_context(b) for b in blocks])


def with_findings(text: str, folder: Path) -> str:
    """``text`` (Markdown starting with its title) with ``folder/findings.md``, the reader's
    summary written by a person, put right below the title; ``text`` as it is without one."""
    findings = Path(folder) / "findings.md"
    if not findings.exists():
        return text
    title, _, rest = text.partition("\n\n")
    return f"{title}\n\n{findings.read_text().strip()}\n\n{rest}"
