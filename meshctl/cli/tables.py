"""Plain-text tables for `up`, `status` and `history`, laid out by rich (typer brings it).

No borders and no colour: the output is read by people and by `grep`/`awk` alike. Cells are
rich `Text`, never markup, so a name with brackets prints as it is.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0),
                  header_style="", highlight=False)
    for title in header:
        table.add_column(Text(title), no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, force_terminal=False,
            highlight=False, emoji=False).print(table)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
