"""The structured blocks a report is made of; :mod:`hessbench.report.render` turns a list of
them into Markdown or HTML. Text fields hold inline Markdown (`code`, **bold**, *emphasis*)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class BulletList:
    items: list[str]


@dataclass(frozen=True)
class CodeBlock:
    text: str
    language: str = "bash"


@dataclass(frozen=True)
class Figure:
    path: Path
    alt: str


@dataclass(frozen=True)
class Table:
    """A table of inline-Markdown cells; ``highlight[i]`` marks row i (e.g. the winner)."""

    header: list[str]
    rows: list[list[str]]
    highlight: list[bool] = field(default_factory=list)

    def highlighted(self, i: int) -> bool:
        return i < len(self.highlight) and self.highlight[i]


Block = Union[Heading, Paragraph, BulletList, CodeBlock, Figure, Table]
