"""Shared shape of the listing commands (``plugins``, ``architectures``, ...)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def add_listing(sub: Any, name: str, help_text: str,
                rows: Callable[[], list[dict[str, Any]]],
                line: Callable[[dict[str, Any]], str]) -> None:
    """Add a subcommand that prints ``rows()`` as text lines or, with ``--json``, as JSON."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--json", action="store_true", help="print JSON")

    def handler(args: argparse.Namespace) -> int:
        items = rows()
        if args.json:
            print(json.dumps(items, indent=2, default=str))
        else:
            for item in items:
                print(line(item))
        return 0

    parser.set_defaults(handler=handler)
