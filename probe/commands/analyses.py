"""``probe analyses [--json]``: analyses with options, passes and tables."""

from __future__ import annotations

from typing import Any

from probe.commands._listing import add_listing


def _rows() -> list[dict[str, Any]]:
    from probe.host import get_host

    return [cls.describe() for cls in get_host().analyses]


def _line(item: dict[str, Any]) -> str:
    return (f"{item['name']:<14} {item['description']} "
            f"[passes: {item['passes']}; tables: {', '.join(item['tables'])}]")


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    add_listing(sub, "analyses", "list analyses", _rows, _line)
