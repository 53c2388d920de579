"""Terminal output: tables of counts and progress bars that stay quiet when not interactive."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

console = Console(stderr=False, soft_wrap=True)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a table of results."""
    t = Table(title=title, show_lines=False)
    for column in columns:
        t.add_column(str(column))
    for row in rows:
        t.add_row(*("" if v is None else f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console.print(t)


def progress(total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> tqdm:
    """A progress bar on stderr; disabled when ``enabled`` is false."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
