"""Terminal output: tables of counts and progress bars that stay quiet when not interactive.

Everything a table shows may come from an issue (a title, a label, a summary) or a query, so every cell,
column name and title is shown as plain text: Rich's markup (``[link=…]``, ``[bold]``) is escaped, and
control characters (terminal escape sequences such as OSC 52, which writes the clipboard) are removed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from tqdm.auto import tqdm

console = Console(stderr=False, soft_wrap=True)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: Any) -> str:
    """``text`` without control characters (tabs and newlines stay), to print as it is (see :func:`shown`)."""
    return _CONTROL.sub("", str(text))


def shown(text: Any) -> str:
    """``text`` as Rich markup that prints it literally: control characters removed, markup escaped."""
    return escape(plain(text))


def cell(value: Any) -> str:
    """One table cell: numbers formatted, everything else shown literally."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return shown(value)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a table of results; titles, column names and cells are shown literally (issue text is not markup)."""
    t = Table(title=shown(title), show_lines=False)
    for column in columns:
        t.add_column(shown(column))
    for row in rows:
        t.add_row(*(cell(v) for v in row))
    console.print(t)


def progress(total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> tqdm:
    """A progress bar on stderr; disabled when ``enabled`` is false."""
    return tqdm(
        total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True, mininterval=0.5
    )
