"""``probe architectures [--json]``: architectures with options, task and layer names."""

from __future__ import annotations

from typing import Any

from probe.commands._listing import add_listing


def _rows() -> list[dict[str, Any]]:
    from probe.host import get_host

    return [spec.describe() for spec in get_host().architectures]


def _line(item: dict[str, Any]) -> str:
    return (f"{item['name']:<16} {item['task']:<15} {item['description']} "
            f"[layers: {', '.join(item['layers'])}]")


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    add_listing(sub, "architectures", "list architectures", _rows, _line)
