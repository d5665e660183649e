"""``probe datasets [NAME] [--json]``: data sources with their options."""

from __future__ import annotations

from typing import Any

from probe.commands._listing import add_listing, format_detail, listed, option_rows


def _rows() -> list[dict[str, Any]]:
    from probe.host import get_host

    return [spec.describe() for spec in get_host().datasets]


def _item(name: str) -> dict[str, Any]:
    """One data set's description and its plugin (unknown: ProbeError)."""
    from probe.host import get_host

    host = get_host()
    return {**host.datasets.get(name).describe(), "plugin": host.datasets.owner(name)}


def _line(item: dict[str, Any]) -> str:
    opts = ", ".join(f"{o['name']}={o['default']}" for o in item["options"])
    return f"{item['name']:<12} {item['description']} [{opts}]"


def detail(item: dict[str, Any]) -> str:
    """Everything about one data set, as ``probe datasets NAME`` prints it."""
    name = item["name"]
    fields = [("plugin", str(item.get("plugin", "-"))), ("tasks", listed(item["tasks"])),
              ("masks", "yes (concept masks: dissection applies)" if item["has_masks"]
               else "no")]
    return format_detail(name, item["description"], fields, [
        ("options (--set dataset.OPTION=VALUE)", option_rows(item["options"])),
    ])


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    add_listing(sub, "datasets", "list data sets", _rows, _line, item=_item, detail=detail,
                singular="dataset")
