"""Shared shape of the listing commands (``plugins``, ``architectures``, ...).

``probe KIND`` prints one line per item; ``probe KIND NAME`` (where the kind has
details) prints one item in full: its description, a few ``label  value``
fields, then sections such as its tables and its options, wrapped to the
terminal. ``--json`` prints the same items as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

#: ``(label, value)`` lines under an item's title.
Fields = Sequence[tuple[str, str]]
#: ``(heading, rows)``: a section of rows of columns; the last column is wrapped text.
Sections = Sequence[tuple[str, Sequence[Sequence[str]]]]


def add_listing(sub: Any, name: str, help_text: str,
                rows: Callable[[], list[dict[str, Any]]],
                line: Callable[[dict[str, Any]], str], *,
                item: Callable[[str], dict[str, Any]] | None = None,
                detail: Callable[[dict[str, Any]], str] | None = None,
                singular: str = "item") -> None:
    """Add a subcommand that prints ``rows()`` as text lines or, with ``--json``, as JSON.

    With ``item`` and ``detail``, ``probe NAME ITEM`` prints ``detail(item(ITEM))``
    (``item`` raises :class:`~probe.errors.ProbeError` for an unknown name).
    """
    description = help_text
    if item is not None:
        description += f"; with a {singular} name, everything about that {singular}"
    parser = sub.add_parser(name, help=help_text, description=description)
    if item is not None:
        parser.add_argument("name", nargs="?", metavar=singular.upper(),
                            help=f"show this {singular} in full")
    parser.add_argument("--json", action="store_true", help="print JSON")

    def handler(args: argparse.Namespace) -> int:
        chosen = getattr(args, "name", None)
        if chosen is not None and item is not None and detail is not None:
            found = item(chosen)
            print(json.dumps(found, indent=2, default=str) if args.json else detail(found))
            return 0
        items = rows()
        if args.json:
            print(json.dumps(items, indent=2, default=str))
        else:
            for entry in items:
                print(line(entry))
        return 0

    parser.set_defaults(handler=handler)


def width() -> int:
    """Columns to wrap to: the terminal's, at least 60 and at most 120."""
    return max(60, min(120, shutil.get_terminal_size((100, 24)).columns))


def format_detail(title: str, description: str, fields: Fields, sections: Sections) -> str:
    """One item in full: ``title: description``, aligned fields, then wrapped sections."""
    columns = width()
    out = textwrap.wrap(f"{title}: {description}", columns, subsequent_indent="  ")
    if fields:
        out.append("")
        pad = max(len(label) for label, _ in fields) + 2
        for label, value in fields:
            out.extend(textwrap.wrap(value or "-", columns, initial_indent=
                                     f"  {label:<{pad}}", subsequent_indent=" " * (pad + 2)))
    for heading, rows in sections:
        out.extend(["", f"  {heading}"])
        out.extend(format_rows(rows, columns) if rows else ["    (none)"])
    return "\n".join(out)


#: Widest padded column (name, type, default, ...): a longer cell puts its text below.
COLUMN_CAPS = (22, 10, 12)


def format_rows(rows: Sequence[Sequence[str]], columns: int) -> list[str]:
    """Rows indented by four, every column but the last padded (to at most
    :data:`COLUMN_CAPS`), the last one wrapped beside them; a row with a longer cell has
    its text on the next line."""
    widths = [min(COLUMN_CAPS[min(i, len(COLUMN_CAPS) - 1)], max(len(row[i]) for row in rows))
              for i in range(len(rows[0]) - 1)]
    lead = 4 + sum(w + 2 for w in widths)
    if lead > columns * 0.6:  # too little room beside the columns: text always below
        lead = 8
    out = []
    for row in rows:
        cells, text = row[:-1], row[-1]
        fits = lead > 8 and all(len(c) <= w for c, w in zip(cells, widths, strict=True))
        if fits:
            first = "    " + "".join(f"{c:<{w + 2}}" for c, w in zip(cells, widths,
                                                                    strict=True))
            out.extend(textwrap.wrap(text or "-", columns, initial_indent=first,
                                     subsequent_indent=" " * lead) or [first.rstrip()])
            continue
        out.append("    " + "".join(f"{c:<{w + 2}}" for c, w in zip(cells, widths,
                                                                 strict=True)).rstrip())
        out.extend(textwrap.wrap(text, columns, initial_indent=" " * lead,
                                 subsequent_indent=" " * lead))
    return out


def option_rows(options: Sequence[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, "help [limits]")`` for each option of a ``describe()``,
    with a heading row."""
    rows = [("NAME", "TYPE", "DEFAULT", "MEANING [CHOICES OR LIMITS]")]
    for option in options:
        default = option.get("default")
        if isinstance(default, (list, tuple)):
            default = ",".join(str(x) for x in default) or '""'
        text = str(option.get("help") or "")
        limits = option_limits(option)
        if limits:
            text += f" [{limits}]"
        rows.append((str(option["name"]), str(option.get("type", "?")), str(default), text))
    return rows if options else []


def option_limits(option: dict[str, Any]) -> str:
    """An option's choices or range as text (``""`` when it has none)."""
    if option.get("choices"):
        return "one of " + ", ".join(str(c) for c in option["choices"])
    low, high = option.get("minimum"), option.get("maximum")
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f">= {low}"
    if high is not None:
        return f"<= {high}"
    return ""


def listed(values: Sequence[Any]) -> str:
    """Values joined by commas, ``-`` when there are none."""
    return ", ".join(str(v) for v in values) or "-"
