"""8-bit RGB and RGBA PNGs decoded by OpenCV, without PIL's per-file cost.

A Broden directory holds several small PNGs per image (one label map per category
layer, often the image itself). For 64 px maps PIL spends more time opening,
probing and wrapping a file than libpng spends decoding it; OpenCV's ``imdecode``
is one C++ call on the file's bytes (about 50 µs for a 64 px map here, against
about 150 µs through PIL). PNG is lossless, so both give the same pixels. Only the
files this module is sure of take this path: 8-bit depth, colour type RGB or
RGBA, not interlaced (read from the IHDR header). Every other file (palette,
grey, 16-bit, interlaced, damaged, missing, not a PNG) gets ``None``, so the
caller reads it with PIL and reports its problems as before.

OpenCV is imported on the first call, not when the data-set plugin loads.
"""

from __future__ import annotations

import struct
from functools import cache
from types import ModuleType

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
RGB, RGBA = 2, 6  # PNG colour types (PNG specification, 11.2.2)
_HEADER_END = 29  # signature (8), IHDR length and tag (8), width … interlace (13)


def header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """``(width, height, bit depth, colour type, interlace)`` from a PNG's IHDR chunk, or
    ``None`` when ``data`` does not start like a PNG."""
    if len(data) < _HEADER_END or data[:8] != SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(
        ">IIBBBBB", data[16:_HEADER_END])
    return width, height, depth, colour, interlace


@cache
def _opencv() -> ModuleType:
    import cv2

    return cv2


def decode_rgb(data: bytes) -> np.ndarray | None:
    """``uint8[h, w, 3]`` RGB pixels (alpha dropped) of an 8-bit, non-interlaced RGB or RGBA
    PNG; ``None`` for any other file, including one the decoder rejects.

    The array is a channel-reversed view of OpenCV's BGR(A) buffer (negative stride):
    copy it before ``torch.from_numpy``.
    """
    fields = header(data)
    if fields is None:
        return None
    width, height, depth, colour, interlace = fields
    if depth != 8 or colour not in (RGB, RGBA) or interlace:
        return None
    cv2 = _opencv()
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if (pixels is None or pixels.dtype != np.uint8 or pixels.ndim != 3
            or pixels.shape[:2] != (height, width) or pixels.shape[2] not in (3, 4)):
        return None
    return pixels[..., 2::-1]


def read_rgb(path: str) -> np.ndarray | None:
    """:func:`decode_rgb` of the file at ``path``; ``None`` also when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return decode_rgb(data)
