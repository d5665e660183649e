"""The one file route: ``/files/<run>/<analysis>/<path>`` serves a run's small artifacts.

Only files that :meth:`RunSource.artifact` accepts are served (a listed run, an
analysis of it, plain names, no ``..``, no absolute paths, no symlink out of the
run, a whitelisted type); everything else is a 404 with the reason.
"""

from __future__ import annotations

import flask

from probe.dashboards.data import CONFIG_KEY, SERVABLE, NotFound

PREFIX = "/files"


def serve_artifact(run: str, analysis: str, relative: str) -> flask.Response:
    """Flask view for one artifact."""
    source = flask.current_app.config[CONFIG_KEY]
    try:
        path = source.artifact(run, analysis, relative)
    except NotFound as exc:
        return flask.Response(str(exc), status=404, mimetype="text/plain")
    response = flask.send_file(path, mimetype=SERVABLE[path.suffix.lower()])
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def artifact_url(run: str, analysis: str, relative: str) -> str:
    """The URL of an artifact (names are checked when it is requested)."""
    return f"{PREFIX}/{run}/{analysis}/{relative}"


def add_routes(server: flask.Flask) -> None:
    """Attach the artifact route to the app's Flask server."""
    server.add_url_rule(f"{PREFIX}/<run>/<analysis>/<path:relative>", "probe_artifact",
                        serve_artifact)
