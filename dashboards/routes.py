"""The app's own routes and response headers.

* ``/files/<run>/<analysis>/<path>`` serves a run's small artifacts: only files
  that :meth:`RunSource.artifact` accepts (a listed run, an analysis of it,
  plain names, no ``..``, no absolute paths, no symlink out of the run, a
  whitelisted type); everything else is a 404 with the reason. An artifact is
  run data, not part of the app, so it is served in a sandbox
  (``Content-Security-Policy: sandbox``: no script of it runs, and never in the
  dashboard's origin), with ``nosniff``, and SVG (which can carry scripts) only
  as a download.
* Every page of the app itself carries a Content-Security-Policy that allows
  scripts from the app only (plus the hashes of Dash's own inline scripts), so
  nothing injected into a page runs either.
* A bad ``/_dash-component-suites/...`` path is a 404, and a callback request
  that is not one (a body Dash cannot dispatch) is a 400, instead of a 500.
"""

from __future__ import annotations

import logging
from typing import Any

import flask
from dash.exceptions import PreventUpdate
from werkzeug.exceptions import HTTPException

from probe.dashboards.data import CONFIG_KEY, SERVABLE, NotFound

PREFIX = "/files"
#: Artifact types that can carry scripts: served only as downloads.
DOWNLOAD_ONLY = {".svg"}
#: The policy of every artifact: a sandboxed document that may load nothing.
ARTIFACT_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
#: The policy of the app's own responses (``{scripts}``: Dash's inline script hashes).
#: Plotly and Dash inject ``<style>`` elements, so styles may be inline; scripts may not.
APP_CSP = ("default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
           "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
           "frame-ancestors 'none'")

logger = logging.getLogger("probe.dashboards")


def serve_artifact(run: str, analysis: str, relative: str) -> flask.Response:
    """Flask view for one artifact."""
    source = flask.current_app.config[CONFIG_KEY]
    try:
        path = source.artifact(run, analysis, relative)
    except NotFound as exc:
        return not_found(str(exc))
    suffix = path.suffix.lower()
    response = flask.send_file(path, mimetype=SERVABLE[suffix],
                               as_attachment=suffix in DOWNLOAD_ONLY, download_name=path.name)
    response.headers["Content-Security-Policy"] = ARTIFACT_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


def not_found(reason: str) -> flask.Response:
    """A plain-text 404 with the reason."""
    return flask.Response(reason, status=404, mimetype="text/plain")


def bad_file_url(rest: str) -> flask.Response:
    """Any other URL under the prefix is a 404 rather than the app's page."""
    return not_found(f"file URLs look like {PREFIX}/<run>/<analysis>/<file>, got "
                     f"{PREFIX}/{rest[:200]}")


def artifact_url(run: str, analysis: str, relative: str) -> str:
    """The URL of an artifact (names are checked when it is requested)."""
    return f"{PREFIX}/{run}/{analysis}/{relative}"


def add_routes(server: flask.Flask) -> None:
    """Attach the artifact route to the app's Flask server."""
    server.add_url_rule(f"{PREFIX}/<run>/<analysis>/<path:relative>", "probe_artifact",
                        serve_artifact)
    server.add_url_rule(f"{PREFIX}/<path:rest>", "probe_bad_file", bad_file_url)
    server.add_url_rule(f"{PREFIX}/", "probe_bad_file_root", bad_file_url, defaults={"rest": ""})


def harden(app: Any) -> None:
    """Security headers on every response, 404s for bad component paths, 400s for bad bodies.

    Call after the app's routes exist (:func:`probe.dashboards.create_app` does).
    """
    server: flask.Flask = app.server
    for rule in server.url_map.iter_rules():
        if "_dash-component-suites" in rule.rule:
            server.view_functions[rule.endpoint] = _component_file(
                server.view_functions[rule.endpoint])
        elif rule.rule.endswith("_dash-update-component"):
            server.view_functions[rule.endpoint] = _callback_request(
                server.view_functions[rule.endpoint])

    def headers(response: flask.Response) -> flask.Response:
        if "Content-Security-Policy" not in response.headers:
            scripts = ""
            if response.mimetype == "text/html":  # only pages hold inline scripts
                scripts = "".join(f" {h}" for h in app.csp_hashes())
            response.headers["Content-Security-Policy"] = APP_CSP.format(scripts=scripts)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    server.after_request(headers)


def _component_file(view: Any) -> Any:
    """Dash's component-suite view, answering 404 for any path it cannot serve."""
    def serve(package_name: str, fingerprinted_path: str) -> Any:
        try:
            return view(package_name, fingerprinted_path)
        except HTTPException:
            raise
        except Exception as exc:  # Dash raises DependencyException, OSError, KeyError, ...
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            return not_found(f"no component file {package_name[:80]}/"
                             f"{fingerprinted_path[:200]} ({type(exc).__name__}: {first})")
    serve.__name__ = getattr(view, "__name__", "serve")
    return serve


def _callback_request(view: Any) -> Any:
    """Dash's callback dispatcher, answering 400 for a body that is not a callback request.

    Exceptions of the callbacks themselves never get here: the app's ``on_error``
    handler turns them into a message on the page (:func:`callback_error`).
    """
    def dispatch() -> Any:
        body = flask.request.get_json(silent=True)
        problem = _body_problem(body)
        if problem is None:
            try:
                return view()
            except (HTTPException, PreventUpdate):
                raise
            except Exception as exc:
                logger.warning("bad callback request: %s: %s", type(exc).__name__, exc)
                problem = f"{type(exc).__name__}: {str(exc)[:200]}"
        return flask.Response(f"not a Dash callback request: {problem}", status=400,
                              mimetype="text/plain")
    for name in ("__name__", "__qualname__", "__module__"):
        if hasattr(view, name):
            setattr(dispatch, name, getattr(view, name))
    return dispatch


def _body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("output"), str):
        return "'output' must be a string"
    for key in ("inputs", "state"):
        if not isinstance(body.get(key, []), list):
            return f"{key!r} must be a list"
    return None


def callback_error(exc: Exception) -> Any:
    """The app's ``on_error``: a callback that raised shows one line instead of failing.

    Outputs that hold page content (``children``) get the message; every other
    output is left as it is. The traceback goes to the server's log.
    """
    from dash import callback_context, no_update

    from probe.dashboards.components import notice

    logger.error("callback failed", exc_info=exc)
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    text = f"This view could not be shown: {type(exc).__name__}: {first}"
    outputs = callback_context.outputs_list
    if isinstance(outputs, dict):
        return notice(text, id="callback-error") if outputs.get("property") == "children" \
            else no_update
    return [notice(text, id=f"callback-error-{i}")
            if isinstance(o, dict) and o.get("property") == "children" else no_update
            for i, o in enumerate(outputs)]
