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


def bad_file_url(rest: str) -> flask.Response:
    """Any other URL under the prefix is a 404 rather than the app's page."""
    return flask.Response(f"file URLs look like {PREFIX}/<run>/<analysis>/<file>, got "
                          f"{PREFIX}/{rest}", status=404, mimetype="text/plain")


def artifact_url(run: str, analysis: str, relative: str) -> str:
    """The URL of an artifact (names are checked when it is requested)."""
    return f"{PREFIX}/{run}/{analysis}/{relative}"


def add_routes(server: flask.Flask) -> None:
    """Attach the artifact route to the app's Flask server."""
    server.add_url_rule(f"{PREFIX}/<run>/<analysis>/<path:relative>", "probe_artifact",
                        serve_artifact)
    server.add_url_rule(f"{PREFIX}/<path:rest>", "probe_bad_file", bad_file_url)
    server.add_url_rule(f"{PREFIX}/", "probe_bad_file_root", bad_file_url, defaults={"rest": ""})
