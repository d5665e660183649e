"""Embedding helpers: figures as inline plotly calls, images as ``data:`` URIs.

Nothing written here refers to anything outside the HTML file: plotly.js is
inlined once (see :func:`plotly_bundle`), figures are JSON handed to
``Plotly.newPlot``, images are base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from typing import Any

import numpy as np

_COUNTER = itertools.count()


def plotly_bundle() -> str:
    """The ``<script>`` tag that carries plotly.js itself (include it once per page)."""
    from plotly.offline import get_plotlyjs

    source = get_plotlyjs().replace("</script", "<\\/script")
    return f'<script id="plotly-js" type="text/javascript">{source}</script>'


def figure_html(figure: Any, height: int | None = None) -> str:
    """A plotly figure as a ``<div>`` plus an inline ``Plotly.newPlot`` call.

    Args:
        figure: A ``plotly.graph_objects.Figure`` (or anything with ``to_json``).
        height: Pixel height of the plot area (default: the figure's own, else 420).
    """
    import plotly.io as pio

    number = next(_COUNTER)
    div_id = f"figure-{number}"
    layout_height = getattr(getattr(figure, "layout", None), "height", None)
    figure.update_layout(autosize=True, width=None)
    pixels = int(height or layout_height or 420)
    spec = pio.to_json(figure, validate=False).replace("</", "<\\/")
    return (f'<div class="figure" id="{div_id}" style="height:{pixels}px"></div>\n'
            f'<script type="text/javascript">(function(){{var f={spec};'
            f'Plotly.newPlot("{div_id}",f.data,f.layout,'
            f'{{"responsive":true,"displaylogo":false,"showLink":false}});}})();</script>')


def png_data_uri(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of an image.

    Args:
        pixels: ``uint8`` array ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB).
    """
    from PIL import Image

    if pixels.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8, got {pixels.dtype}")
    if pixels.ndim not in (2, 3):
        raise ValueError(f"pixels must be [H, W] or [H, W, 3], got shape {pixels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def escape(value: Any) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)
