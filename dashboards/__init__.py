"""The Dash dashboard (``probe dash``)."""
