"""Batch reports: one self-contained HTML file (and a PDF) from one or many runs.

>>> from probe.report import build_report
>>> build_report(["runs/lenet5"], "report.html")

The report reuses each analysis's ``figures(tables)`` (the same functions the
dashboard draws), so an analysis from a third-party plugin gets its section
too; an analysis without figures, or whose plugin is not installed, is shown
through its tables.
"""

from probe.report.html import build_report
from probe.report.pdf import ChromiumMissing, find_chromium, print_pdf

__all__ = ["ChromiumMissing", "build_report", "find_chromium", "print_pdf"]
