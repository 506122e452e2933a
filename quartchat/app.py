"""The app factory: settings, sessions, the runtime, blueprints, error pages, headers."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from quart import Quart, Response, g, has_request_context, render_template, request
from werkzeug.exceptions import HTTPException

from .asgi_send import KeepAsgiSend
from .compression import RefuseCompression
from .hosts import LOOPBACK_NAMES, AllowedHosts
from .resources import resource
from .runtime import Runtime
from .settings import Settings
from .static import register_static
from .web_session import configure_sessions
from .ws_asgi import DirectWebsocket

MAX_REQUEST_BYTES = 64 * 1024
access_log = logging.getLogger("quartchat.access")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def create_app(settings: Settings | None = None) -> Quart:
    """The Quart app; `settings` default to the environment (README.md, "Configuration")."""
    settings = settings or Settings.from_env()
    app = Quart(__name__, template_folder=str(resource("templates")), static_folder=None)
    app.asgi_websocket_class = DirectWebsocket  # no receiver task, no frame queue (ws_asgi.py)
    register_static(app, resource("static"))
    configure_sessions(app, settings.resolved_secret_key(), timedelta(seconds=settings.session_lifetime))
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    chat = Runtime(settings)
    app.extensions["quartchat"] = chat
    app.before_serving(chat.start)
    app.after_serving(chat.stop)

    from . import api, bot_api, pages, rooms_api, search_api, ws

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(rooms_api.bp)
    app.register_blueprint(bot_api.bp)
    app.register_blueprint(search_api.bp)
    app.register_blueprint(ws.bp)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response | tuple[str, int]:
        status = exc.code or 500
        # Quart runs these handlers for WebSocket upgrades too (a path with no socket
        # route), where there is no `request`: refuse the upgrade with a JSON answer.
        if not has_request_context() or request.path.startswith("/api/") or request.path == "/healthz":
            return api.error(status, exc.description or exc.name)
        return await render_template("error.html", status=status, title=exc.name), status

    @app.before_request
    async def note_start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    async def security_headers_and_log(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        # Pages, API answers and exports depend on the session (the sign-in form holds
        # its CSRF token): no cache, shared or the browser's, may keep them for another
        # reader or after sign-out. Static files say how they may be cached themselves.
        response.headers.setdefault("Cache-Control", "no-store")
        # The client's address as the trusted proxies report it; the user if the
        # request looked its session up; never a cookie, a password or a query string.
        user = g.get("user")
        started = g.get("started")
        access_log.info(
            "request address=%s method=%s path=%s status=%d user=%s room=%s ms=%.1f",
            request.remote_addr,
            request.method,
            request.path,
            response.status_code,
            user.id if user is not None else "-",
            (request.view_args or {}).get("room", "-"),
            (time.perf_counter() - started) * 1000 if started is not None else 0.0,
        )
        return response

    app.asgi_app = AllowedHosts(  # type: ignore[method-assign]
        RefuseCompression(KeepAsgiSend(app.asgi_app)), settings.allowed_hosts or LOOPBACK_NAMES
    )
    if settings.trusted_proxy_hops:
        from .proxy import TrustedProxies

        app.asgi_app = TrustedProxies(app.asgi_app, settings.trusted_proxy_hops)  # type: ignore[method-assign]
    logging.getLogger("quartchat").setLevel(logging.INFO)
    return app
