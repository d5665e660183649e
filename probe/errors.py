"""Exceptions that reach the user as one clear line (see :mod:`probe.cli`)."""

from __future__ import annotations


class ProbeError(Exception):
    """A mistake the user can fix: unknown name, bad option, missing file.

    The command line prints ``probe: error: <message>`` and exits non-zero,
    without a traceback (``--debug`` shows it).
    """


class OptionError(ProbeError, ValueError):
    """An option value that is unknown, of the wrong type or out of range."""


class PluginError(ProbeError):
    """A plugin that broke a registration rule; the message names the plugin."""


class DataError(ProbeError):
    """Bad input data; the message names the file (and row) at fault."""


class CheckpointError(ProbeError):
    """A checkpoint that is missing, unsafe to load or does not fit the model."""


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (just ``Type`` for an empty message)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
