"""``probe analyses [NAME] [--json]``: analyses with options, passes and tables."""

from __future__ import annotations

from typing import Any

from probe.commands._listing import add_listing, format_detail, listed, option_rows


def _rows() -> list[dict[str, Any]]:
    from probe.host import get_host

    return [cls.describe() for cls in get_host().analyses]


def _item(name: str) -> dict[str, Any]:
    """One analysis's description and the plugin that registered it (unknown: ProbeError)."""
    from probe.host import get_host

    host = get_host()
    return {**host.analyses.get(name).describe(), "plugin": host.analyses.owner(name)}


def _line(item: dict[str, Any]) -> str:
    return (f"{item['name']:<14} {item['description']} "
            f"[passes: {item['passes']}; tables: {', '.join(item['tables'])}]")


def detail(item: dict[str, Any]) -> str:
    """Everything about one analysis, as ``probe analyses NAME`` prints it."""
    name = item["name"]
    passes = item["passes"]
    fields = [("plugin", str(item.get("plugin", "-"))),
              ("passes", f"{passes} over the data" if passes else "0 (weights only)"),
              ("requires", listed(item["requires"]) if item["requires"] else
               "images only"),
              ("gradients", "yes (backward through the model)" if item["gradients"] else "no"),
              ("run it", f"probe run --arch ARCH --dataset DATA --analysis {name} --out RUN")]
    tables = [(table, listed(columns)) for table, columns in item["tables"].items()]
    return format_detail(name, item["description"], fields, [
        (f"tables (RUN/{name}/TABLE.parquet; columns)", tables),
        (f"options (--set {name}.OPTION=VALUE)", option_rows(item["options"])),
    ])


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    add_listing(sub, "analyses", "list analyses", _rows, _line, item=_item, detail=detail,
                singular="analysis")
