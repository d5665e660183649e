"""``probe datasets [--json]``: data sources with their options."""

from __future__ import annotations

from typing import Any

from probe.commands._listing import add_listing


def _rows() -> list[dict[str, Any]]:
    from probe.host import get_host

    return [spec.describe() for spec in get_host().datasets]


def _line(item: dict[str, Any]) -> str:
    opts = ", ".join(f"{o['name']}={o['default']}" for o in item["options"])
    return f"{item['name']:<12} {item['description']} [{opts}]"


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    add_listing(sub, "datasets", "list data sets", _rows, _line)
