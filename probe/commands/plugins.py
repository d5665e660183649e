"""``probe plugins [--json]``: every loaded plugin, its version and what it registered."""

from __future__ import annotations

from typing import Any

from probe.commands._listing import add_listing


def _rows() -> list[dict[str, Any]]:
    from probe.host import get_host

    return get_host().describe()


def _line(item: dict[str, Any]) -> str:
    if item["error"]:
        return (f"{item['name']} {item['version']} ({item['source']}): "
                f"FAILED TO LOAD: {item['error']}")
    what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in item["registered"].items())
    return f"{item['name']} {item['version']} ({item['source']}): {what or 'hooks only'}"


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    add_listing(sub, "plugins", "list loaded plugins", _rows, _line)
