"""The Dash dashboard (``probe dash``): :func:`create_app` builds it for a runs folder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dash import Dash

__all__ = ["create_app"]


def create_app(runs_dir: Any, **kwargs: Any) -> Dash:
    """Build the dashboard app (see :func:`probe.dashboards.app.create_app`)."""
    from probe.dashboards.app import create_app as _create

    return _create(runs_dir, **kwargs)
