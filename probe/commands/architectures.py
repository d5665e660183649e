"""``probe architectures [NAME] [--json]``: architectures with options, task and layer names."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from probe.commands._listing import add_listing, format_detail, listed, option_rows


def _rows() -> list[dict[str, Any]]:
    from probe.host import get_host

    return [spec.describe() for spec in get_host().architectures]


def _item(name: str) -> dict[str, Any]:
    """One architecture's description, plugin and training recipe (unknown: ProbeError)."""
    from probe.host import get_host

    host = get_host()
    spec = host.architectures.get(name)
    recipe = asdict(spec.train) if spec.train is not None else None
    return {**spec.describe(), "plugin": host.architectures.owner(name), "recipe": recipe}


def _line(item: dict[str, Any]) -> str:
    return (f"{item['name']:<16} {item['task']:<15} {item['description']} "
            f"[layers: {', '.join(item['layers'])}]")


def detail(item: dict[str, Any]) -> str:
    """Everything about one architecture, as ``probe architectures NAME`` prints it."""
    recipe = item.get("recipe")
    trained = "no recipe (probe train needs --dataset)"
    if recipe:
        trained = ", ".join(f"{k} {_plain(v)}" for k, v in recipe.items()
                            if v not in (None, {}, (), []))
    fields = [("plugin", str(item.get("plugin", "-"))), ("task", str(item.get("task"))),
              ("input", f"{item.get('in_channels')}×{item.get('input_size')} px"),
              ("layers", listed(item.get("layers", []))), ("training recipe", trained)]
    return format_detail(item["name"], item["description"], fields, [
        ("options (--set arch.OPTION=VALUE)", option_rows(item["options"])),
    ])


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    return str(value)


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    add_listing(sub, "architectures", "list architectures", _rows, _line, item=_item,
                detail=detail, singular="architecture")
