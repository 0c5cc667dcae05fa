"""The dashboard's HTTP application: pages, their live fragments, the JSON API, operator actions.

Pages are rendered on the server with Jinja2 (autoescaping everything) from the reads in
`hrwsi.web.data`. Each page marks its live sections as blocks named `live_<name>`; a request with
the header `X-HRWSI-Fragments: 1` gets those blocks alone, as JSON, which is what the page's script
fetches when a server-sent event says that something it shows has changed (docs/adr/0007).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import asyncpg
import jinja2
from aiohttp import web
from markupsafe import Markup

from hrwsi.backends.ascii_decimal import ascii_decimal
from hrwsi.database import CONNECTIONS_FULL_NEXT, TRANSIENT_DATABASE_ERRORS
from hrwsi.reports import blocking_session_next_step
from hrwsi.service import is_lock_timeout
from hrwsi.sql_files import query
from hrwsi.terminal import in_page
from hrwsi.web import data, gantt
from hrwsi.web.auth import SESSION_COOKIE, Authenticator, WrongTokens, bearer_token
from hrwsi.web.config import HostPolicy
from hrwsi.web.live import LiveHub

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
FLASH_COOKIE = "hrwsi_flash"
ERROR_RETRY_S = 3  # a page the database could not be read for asks for itself again this often
TASK_ACTIONS = {"retry": "retry_task", "cancel": "cancel_task", "hold": "hold_task", "release": "release_task"}
ROUTINE_ACTIONS = {"hold": "hold_routine", "release": "release_routine"}
CAMPAIGN_ACTIONS = {"release": "release_campaign"}
# Each action (as recorded in hrwsi.operator_action) and the query that calls its SQL function.
ACTION_QUERIES = {"retry_task": "web_retry_task", "cancel_task": "web_cancel_task", "hold_task": "web_hold_task",
                  "release_task": "web_release_task", "hold_routine": "web_hold_routine",
                  "release_routine": "web_release_routine", "release_campaign": "web_release_campaign"}
# An operator action while the database refuses writes (a standby after a failover, or default_transaction_read_only).
WRITES_REFUSED = ("the database refuses writes right now (a standby after a failover, or default_transaction_read_only "
                  "on): nothing was done, nor recorded; try again once it takes writes (the overview's first line says "
                  "what to do)")
# Every page's script comes from /static; nothing is fetched from anywhere else.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{seconds // 86400:.0f} d {seconds % 86400 // 3600:.0f} h"


def _time(value: datetime | None, seconds: bool = True) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + "Z"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)


def _number(value: int | float | None) -> str:
    return "-" if value is None else f"{value:,}".replace(",", "\u202f")


def _shown(value: Any) -> Any:
    """Every value a page prints, before its HTML escaping: control and directional formatting
    characters shown as their escape (`\\u202e`), as the CLI shows them (hrwsi.terminal). A right-to-left
    override in an input path showed the file name reversed on /tasks (found by exploratory testing)."""
    if isinstance(value, Markup):  # (a macro's output: its values went through here already)
        return Markup(in_page(value))
    return in_page(value) if isinstance(value, str) else value


def make_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every value is escaped: paths, reasons, messages and names come from users
        finalize=_shown,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(ago=_ago, time=_time, size=_size, number=_number,
                               basename=lambda path: (path or "").rstrip("/").rsplit("/", 1)[-1])
    environment.globals.update(TASK_STATES=data.TASK_STATES, static_version=_static_version())
    return environment


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]



CLIENT_CLOSED_REQUEST = 499  # (nginx's: never sent, the client is gone; what the access log shows)


def _the_client_left(request: web.Request, error: BaseException) -> bool:
    """A reset of the request's own connection (aiohttp's ClientConnectionResetError "Cannot write to
    closing transport" is a ConnectionResetError), not of the database's: its transport is closing."""
    transport = request.transport
    return isinstance(error, ConnectionResetError) and (transport is None or transport.is_closing())

# The server ended the pooled session a read was sent on (a failover, a restart, pg_terminate_backend): the pool
# opens a new one at the next acquire, so a read is asked once more before it is a 503 page. It was a 503 whose page
# came back by itself seconds later (a fresh-clone suite's browser test saw it, the database's sessions ended by
# the failover it plays). Never a form's POST (never sent again behind the operator's back), nor the live stream
# (it may have started its answer; the page reconnects by itself). A session ended while idle in the pool fails its
# next statement with asyncpg's InternalClientError ("cannot switch to state 12; another operation (2) is in
# progress"), the pool then closing it.
SESSION_ENDED = (asyncpg.ConnectionDoesNotExistError, asyncpg.AdminShutdownError, asyncpg.InternalClientError)


async def _read_again_on_a_session_ended(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SESSION_ENDED as error:
        if request.method not in ("GET", "HEAD") or request.path == "/events":
            raise
        logger.info("web: %s %s: the database ended the session it was read on (%s): read again on a new one",
                    request.method, request.path, type(error).__name__)
        return await handler(request)


class Dashboard:
    """The handlers. `read_pool` is the dashboard's own pool (see WebSettings.pool_size)."""

    def __init__(self, read_pool: asyncpg.Pool, hub: LiveHub, overview: data.OverviewCache, auth: Authenticator,
                 data_dir: Path, ui_link: Callable[[str, str], str | None] | None = None,
                 extra_routes: list[web.RouteDef] = (), hosts: HostPolicy | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.pool = read_pool
        # A session's expiry is an instant: read by the database's clock as the service tells it (its
        # DatabaseClock), not the host's. By the host's, setting its clock back made expired sessions valid
        # again, and every replica judged them by its own clock (found by exploratory testing).
        self.clock = clock or (lambda: datetime.now(UTC))
        self.hosts = hosts or HostPolicy()
        self.hub = hub
        self.overview = overview
        self.auth = auth
        self.wrong_tokens = WrongTokens()
        self.data_dir = data_dir
        self.ui_link = ui_link
        self.extra_routes = list(extra_routes)
        self.environment = make_environment()

    # -- the application -------------------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._errors_and_headers], client_max_size=64 * 1024)
        app.add_routes([
            web.get("/", self.page_overview), web.get("/tasks", self.page_tasks),
            web.get(r"/tasks/{task_id:[0-9]{1,18}}", self.page_task), web.get("/plan", self.page_plan),
            web.get("/alerts", self.page_alerts), web.get("/audit", self.page_audit),
            web.get("/login", self.page_login), web.post("/login", self.login), web.post("/logout", self.logout),
            web.post(r"/tasks/{task_id:[0-9]{1,18}}/{action}", self.form_action),
            web.post("/routines/{routine}/{action}", self.form_action),
            web.post(r"/campaigns/{campaign_id:[0-9]{1,18}}/{action}", self.form_action),
            web.get("/events", self.hub.stream),
            web.get("/api/overview", self.api_overview), web.get("/api/tasks", self.api_tasks),
            web.get(r"/api/tasks/{task_id:[0-9]{1,18}}", self.api_task),
            web.post(r"/api/tasks/{task_id:[0-9]{1,18}}/{action}", self.api_action),
            web.post("/api/routines/{routine}/{action}", self.api_action),
            web.post(r"/api/campaigns/{campaign_id:[0-9]{1,18}}/{action}", self.api_action),
            web.static("/static", STATIC, append_version=False),
            *self.extra_routes,
        ])
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.hub.close()

    @web.middleware
    async def _errors_and_headers(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            if not self.hosts.allows(request.headers.get("Host")):
                # DNS rebinding (HostPolicy): 421, "not the server this name is for", said without
                # echoing the name.
                raise web.HTTPMisdirectedRequest(text="This dashboard does not answer to the name in the request's "
                                                      "Host header; ops allow more names with HRWSI_WEB_ALLOWED_HOSTS.")
            if "\x00" in request.path or any("\x00" in key or "\x00" in value for key, value in request.query.items()):
                # (PostgreSQL's text cannot hold it: the query that took it failed with a 500)
                raise web.HTTPBadRequest(text="The address holds a NUL character (%00), which no name, path or "
                                              "filter can contain.")
            response = await _read_again_on_a_session_ended(request, handler)
        except asyncpg.DataError as error:
            # A value from the request that the database cannot take (a NUL in a form field, a number
            # out of range): the request's fault, said as such.
            logger.info("web: %s %s: the database refused a value of the request: %s", request.method, request.path,
                        error)
            response = self._error(request, 400, f"The database cannot take a value of this request: {error}")
        except asyncpg.LockNotAvailableError as error:
            if not is_lock_timeout(error):
                raise
            response = await self._locked(request)
        except TRANSIENT_DATABASE_ERRORS as error:
            if _the_client_left(request, error):
                # (OSError is among the database's errors: a page closed while its answer was written
                # was logged as "the database is unreachable", and an alert on that line fired)
                logger.debug("web: %s %s: the client went away (%s)", request.method, request.path, type(error).__name__)
                return web.Response(status=CLIENT_CLOSED_REQUEST, reason="Client Closed Request")
            # (a server out of connection slots runs: "unreachable" sent ops to look for it; found by
            # exploratory testing)
            full = isinstance(error, asyncpg.TooManyConnectionsError)
            logger.warning("web: %s %s: %s (%s)", request.method, request.path,
                           f"the database takes no more connections: {CONNECTIONS_FULL_NEXT}" if full
                           else "the database is unreachable", type(error).__name__)
            what = ("The database server takes no more connections right now (max_connections, or a CONNECTION LIMIT, "
                    "is reached: the dashboard's log says what to do)" if full
                    else "The database cannot be reached right now")
            if request.method == "GET":  # (the page asks for itself again: app.js, data-retry)
                message = f"{what}; this page comes back by itself when it can."
            else:  # (a form's POST is never sent again behind the operator's back)
                message = f"{what}; go back and try again in a moment."
            response = self._error(request, 503, message, retry_s=ERROR_RETRY_S if request.method == "GET" else None)
        except web.HTTPException as error:
            if error.status >= 400 and error.content_type != "application/json":
                response = self._error(request, error.status, error.text or error.reason)
            else:
                # (a JSON refusal, a 401 to the API, or a redirect: the same headers as every answer)
                for name, value in SECURITY_HEADERS.items():
                    error.headers.setdefault(name, value)
                error.headers.setdefault("Cache-Control", "no-store")
                raise
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "public, max-age=3600"
        else:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _locked(self, request: web.Request) -> web.Response:
        """A read that waited data.LOCK_WAIT_S for a lock another session holds: 503, naming the
        sessions holding such locks and what to do, as `hrwsi status` does. They are read from the
        server's views, which no table lock blocks."""
        try:
            async with self.pool.acquire() as conn:
                sessions = [dict(r) for r in await conn.fetch(query("report_sessions_blocking_hrwsi"))]
        except (*TRANSIENT_DATABASE_ERRORS, asyncpg.PostgresError):
            sessions = []
        said = "; ".join(
            f"pid {s['pid']} (role {s['role'] or '?'}, {s['application'] or 'no application name'}"
            + (f", transaction open {s['transaction_s']:.0f} s" if s["transaction_s"] is not None else "") + ")"
            + (f" holds an ACCESS EXCLUSIVE lock on {', '.join(s['locked'])}" if s["locked"] else " holds a lock")
            + f": {blocking_session_next_step(s['pid'])}" for s in sessions)
        logger.warning("web: %s %s: a lock another session holds kept it from being read within %g s (%s)",
                       request.method, request.path, data.LOCK_WAIT_S,
                       ", ".join(f"pid {s['pid']}" for s in sessions) or "the session let it go since")
        message = (f"hrwsi's tables could not be read within {data.LOCK_WAIT_S:g} s: another session holds a lock on "
                   "them" + (f". {said}." if said else " (it was let go since)."))
        if request.method == "GET":
            message += " This page comes back by itself when the lock is let go."
        else:  # (a form's POST is never sent again behind the operator's back)
            message += " Nothing was done: go back and try again once the lock is let go."
        return self._error(request, 503, message, retry_s=ERROR_RETRY_S if request.method == "GET" else None)

    def _error(self, request: web.Request, status: int, message: str, retry_s: int | None = None) -> web.Response:
        if request.path.startswith("/api/") or request.headers.get("X-HRWSI-Fragments"):
            return web.json_response({"error": message}, status=status)
        text = self.environment.get_template("error.html").render(self._base(request) | {
            "status": status, "message": message, "page": "error", "retry": retry_s})
        return web.Response(text=text, status=status, content_type="text/html")

    # -- rendering -------------------------------------------------------------------------------
    def _session(self, request: web.Request) -> tuple[str | None, str | None]:
        cookie = request.cookies.get(SESSION_COOKIE)
        actor = self.auth.actor_for_session(cookie, self.clock().timestamp())
        return (actor, cookie) if actor else (None, None)

    def _base(self, request: web.Request) -> dict[str, Any]:
        actor, cookie = self._session(request)
        return {"actor": actor, "auth_enabled": self.auth.enabled,
                "csrf": self.auth.csrf_for(cookie) if cookie else "", "flash": _read_flash(request),
                "path": request.path_qs}

    def render(self, request: web.Request, name: str, context: dict[str, Any], status: int = 200) -> web.Response:
        template = self.environment.get_template(name)
        values = self._base(request) | context
        if request.headers.get("X-HRWSI-Fragments"):
            # Only the live sections, for the page's script to swap in. A block rendered alone
            # skips the template's top level, where the macros are imported: give them to it.
            macros = self.environment.get_template("macros.html").make_module(values)
            block_context = template.new_context(values | {"m": macros})
            fragments = {block[len("live_"):]: "".join(render(block_context))
                         for block, render in template.blocks.items() if block.startswith("live_")}
            return web.json_response(fragments)
        response = web.Response(text=template.render(values), status=status, content_type="text/html")
        if values["flash"]:
            response.del_cookie(FLASH_COOKIE, path="/")
        return response

    # -- pages -----------------------------------------------------------------------------------
    async def page_overview(self, request: web.Request) -> web.Response:
        overview = await self.overview.get()
        # (?all_services=1: every service row, the replaced instances too, as `hrwsi status --all-services`; the
        # page's script asks its own URL, query included, for its live sections: they stay so)
        return self.render(request, "overview.html", {"page": "overview", "o": overview,
                                                      "all_services": request.query.get("all_services") == "1",
                                                      "series_max": max([1] + [b["processed"] + b["failed"] + b["other"]
                                                                               for b in overview.series])})

    async def page_tasks(self, request: web.Request) -> web.Response:
        search = (request.query.get("q") or "").strip()
        # (ASCII digits: str.isdigit is true of '²' and of other scripts' digits, which int() refuses or reads
        # as another number, and ?q=² answered 500; found by exploratory testing)
        if (task_id := ascii_decimal(search)) is not None:
            raise web.HTTPFound(f"/tasks/{task_id}")
        filters = _filters(request)
        async with self.pool.acquire() as conn:
            rows = await data.read_tasks(conn, filters, data.PAGE_SIZE + 1)
            choices = await data.read_filter_choices(conn)
        rows, cursor = data.page_of(rows)
        older = filters.query_string(before=cursor) if cursor else None
        return self.render(request, "tasks.html", {"page": "tasks", "rows": rows, "filters": filters,
                                                   "choices": choices, "older": older,
                                                   "newest": filters.query_string(before=None)})

    async def page_task(self, request: web.Request) -> web.Response:
        task_id = int(request.match_info["task_id"])
        attempt, before = request.query.get("attempt"), _attempts_before(request)
        async with self.pool.acquire() as conn:
            page = await data.read_task(conn, task_id, self.data_dir, ascii_decimal(attempt or "", max_digits=5),
                                        self.ui_link, before)
        if page is None:
            raise web.HTTPNotFound(text=f"There is no task {task_id}.")
        return self.render(request, "task.html", {"page": "tasks", "p": page, "t": page.task,
                                                  "pruned": _pruned(page.history_pruned_at)})

    async def page_plan(self, request: web.Request) -> web.Response:
        async with self.pool.acquire() as conn:
            schedule = await data.read_schedule(conn)
        chart = gantt.layout(schedule.rows, schedule.workers, schedule.budget, schedule.now)
        return self.render(request, "plan.html", {"page": "plan", "s": schedule, "chart": chart})

    async def page_alerts(self, request: web.Request) -> web.Response:
        return await self._list_page(request, data.read_alerts, "alerts", data.read_alert_queue)

    async def page_audit(self, request: web.Request) -> web.Response:
        return await self._list_page(request, data.read_audit, "audit")

    async def _list_page(self, request: web.Request, read, page: str, read_queue=None) -> web.Response:
        """A page of a list read newest first below ?before=ID (alerts, audit); the alerts' with the outbox's state."""
        async with self.pool.acquire() as conn:
            rows, older = data.page_of(await read(conn, _cursor(request), data.PAGE_SIZE + 1))
            queue = await read_queue(conn) if read_queue else None
        return self.render(request, f"{page}.html", {"page": page, "rows": rows, "older": older, "queue": queue})

    # -- signing in ------------------------------------------------------------------------------
    async def page_login(self, request: web.Request) -> web.Response:
        return self.render(request, "login.html", {"page": "login", "next": _safe_next(request.query.get("next")),
                                                   "failed": False})

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        target = _safe_next(form.get("next"))
        actor = self.auth.actor_for_token(str(form.get("token") or ""))
        if actor is None:
            self._say_wrong_token("a sign-in", request)
            return self.render(request, "login.html", {"page": "login", "next": target, "failed": True}, status=403)
        logger.info("web: %s signed in from %s", actor, request.remote)
        response = web.HTTPSeeOther(target)
        response.set_cookie(SESSION_COOKIE, self.auth.session_for(actor, self.clock().timestamp()),
                            max_age=int(self.auth.session_s), path="/", httponly=True, samesite="Strict",
                            secure=request.secure)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    # -- operator actions --------------------------------------------------------------------------
    async def _form_actor(self, request: web.Request) -> str:
        actor, cookie = self._session(request)
        form = await request.post()
        if actor is None:
            raise web.HTTPSeeOther("/login?" + urlencode({"next": _referer_path(request)}))
        if not self.auth.csrf_ok(cookie, str(form.get("csrf") or "")):
            raise web.HTTPForbidden(text="This form has expired or did not come from this dashboard; reload the page "
                                         "and try again.")
        return actor

    @staticmethod
    def _action_of(request: web.Request) -> tuple[str, int | str]:
        """(action, target) of POST .../tasks/ID/ACTION, .../routines/NAME/ACTION or .../campaigns/ID/ACTION."""
        if "task_id" in request.match_info:
            action, target = TASK_ACTIONS.get(request.match_info["action"]), int(request.match_info["task_id"])
        elif "campaign_id" in request.match_info:
            action, target = CAMPAIGN_ACTIONS.get(request.match_info["action"]), int(request.match_info["campaign_id"])
        else:
            action, target = ROUTINE_ACTIONS.get(request.match_info["action"]), request.match_info["routine"]
        if action is None:
            raise web.HTTPNotFound(text="No such action.")
        if isinstance(target, str) and not target.strip():
            # (no routine has a blank name; the refusal's audit row, whose target must not be blank, failed
            # and /api/routines/%20/hold answered 500; found by exploratory testing)
            raise web.HTTPNotFound(text="There is no routine with a blank name.")
        return action, target

    async def form_action(self, request: web.Request) -> web.Response:
        actor = await self._form_actor(request)
        action, target = self._action_of(request)
        status, message = await self.act(actor, "web", request.remote, action, target)
        response = web.HTTPSeeOther(f"/tasks/{target}" if action.endswith("_task") else _referer_path(request))
        _set_flash(response, status == 200, message)
        raise response

    async def act(self, actor: str, via: str, client: str | None, action: str,
                  target: int | str) -> tuple[int, str]:
        """Run one operator function and record it, with who asked, in hrwsi.operator_action: the
        action and its record commit together; a refusal is recorded too. Returns the HTTP status (200
        done, 404 no such task or routine, 409 not allowed in its state) and the database's message."""
        arguments = (target, f"held by {actor} ({via})") if action == "hold_routine" else (target,)
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    message = await conn.fetchval(query(ACTION_QUERIES[action]), *arguments)
                    await conn.execute(query("web_record_action"), actor, via, action, str(target), True, message,
                                       client)
                status = 200
                # (the page it redirects to shows what it did: a campaign released showed on hold until the overview
                # was read again, no notification telling of a change of hrwsi.campaign)
                self.overview.invalidate()
            except (asyncpg.CheckViolationError, asyncpg.NoDataFoundError) as error:
                message = str(error)
                await conn.execute(query("web_record_action"), actor, via, action, str(target), False, message, client)
                status = 404 if isinstance(error, asyncpg.NoDataFoundError) else 409
            except asyncpg.ReadOnlySQLTransactionError:
                # (a failover onto a standby: the action failed with a 500; nothing can be written, its record neither)
                message = WRITES_REFUSED
                status = 503
        logger.info("web: %s (%s) %s %s: %s", actor, via, action, target, message)
        return status, message

    # -- the JSON API ----------------------------------------------------------------------------
    def _say_wrong_token(self, what: str, request: web.Request) -> None:
        count = self.wrong_tokens.count(request.remote)
        if count is not None:
            logger.warning("web: %s with a wrong token from %s%s", what, request.remote,
                           f" ({count} since this address was last said)" if count > 1 else "")

    def _api_actor(self, request: web.Request) -> str:
        presented = bearer_token(request.headers.get("Authorization"))
        actor = self.auth.actor_for_token(presented)
        if actor is None:
            if presented and self.auth.enabled:
                self._say_wrong_token("an API call", request)
            if not self.auth.enabled:
                raise web.HTTPForbidden(text=json.dumps({"error": "operator actions are off: set HRWSI_WEB_TOKEN"}),
                                        content_type="application/json")
            raise web.HTTPUnauthorized(text=json.dumps({"error": "send Authorization: Bearer <HRWSI_WEB_TOKEN>"}),
                                       content_type="application/json", headers={"WWW-Authenticate": "Bearer"})
        return actor

    async def api_action(self, request: web.Request) -> web.Response:
        actor = self._api_actor(request)
        action, target = self._action_of(request)
        status, message = await self.act(actor, "api", request.remote, action, target)
        return web.json_response({"ok": status == 200, "message": message}, status=status)

    async def api_overview(self, _request: web.Request) -> web.Response:
        overview = await self.overview.get()
        return _json({"totals": overview.totals, "waiting": overview.waiting, "oldest_waiting_s": overview.oldest_s,
                      "processed_last_hour": overview.processed_1h, "failed_last_hour": overview.failed_1h,
                      "routines": [vars(r) for r in overview.routines],
                      # (one per routine, as `hrwsi status --json` lists them: `routines` has a row per lane, and a
                      # script counting its held rows counted a routine held in two lanes twice)
                      "held_routines": [{"routine": r.routine, "reason": r.hold_reason, "held_tasks": r.counts["on_hold"],
                                         "next": r.hold_next} for r in overview.held],
                      "alert_queue": overview.alert_queue, "services": overview.services, "sources": overview.sources,
                      # (as `hrwsi status --json`: the kinds of service none of which is alive, what stops meanwhile)
                      "services_gone": overview.services_gone,
                       "versions": overview.versions, "held_campaigns": overview.held_campaigns,
                       "held_tasks": overview.held_tasks, "held_tasks_total": overview.held_tasks_total,
                       # (as `hrwsi status --json`: what back-fill waits for beside free room, migration 0117)
                       "handover_holds": overview.handover_holds,
                       "writes_refused": overview.writes_refused,
                      "read_s": overview.read_s})

    async def api_tasks(self, request: web.Request) -> web.Response:
        filters = _filters(request)
        async with self.pool.acquire() as conn:
            rows = await data.read_tasks(conn, filters, data.PAGE_SIZE + 1)
        rows, older = data.page_of(rows)
        return _json({"tasks": rows, "older": older})

    async def api_task(self, request: web.Request) -> web.Response:
        async with self.pool.acquire() as conn:
            page = await data.read_task(conn, int(request.match_info["task_id"]), self.data_dir, None, self.ui_link,
                                        _attempts_before(request))
        if page is None:
            raise web.HTTPNotFound(text=json.dumps({"error": "no such task"}), content_type="application/json")
        # (with "jobs": [] alone, a pruned task read as one that never ran)
        return _json(vars(page) | {"history_pruned": _pruned(page.history_pruned_at)})


def _pruned(at: datetime | None) -> str | None:
    """What retention did to a task's history and attempts, as `hrwsi task show` says it; None: nothing."""
    if at is None:
        return None
    return f"history and attempts pruned {_time(at)} by the retention policy, their logs with them (README.md, Retention)"


def _attempts_before(request: web.Request) -> int | None:
    """?attempts_before=N, the attempt a task page's older attempts are listed below; refused when it is not one."""
    value = request.query.get("attempts_before", "").strip()
    if not value:
        return None
    if (before := ascii_decimal(value, max_digits=9)) is None:
        raise web.HTTPBadRequest(text=f"attempts_before={value[:40]!r} is not an attempt number: give the first attempt "
                                      "of the page after")
    return before


def _cursor(request: web.Request) -> int | None:
    try:
        return data.page_cursor(request.query.get("before", "").strip())
    except ValueError as error:
        raise web.HTTPBadRequest(text=str(error)) from None


def _safe_next(value: Any) -> str:
    """Only a plain path on this dashboard (never //host or a scheme): no open redirect after sign-in.

    Anything else is "/": a backslash (browsers read `/\\host` as `//host`), white space and control
    or format characters. Why all of them: URL parsers drop a tab or a line break where they find
    one, so `/<TAB>/evil.example` passed a check for `//` and left as `Location: //evil.example`
    (found by exploratory testing)."""
    text = str(value or "/")
    if not text.startswith("/") or "\\" in text or len(text) > 2048:
        return "/"
    if any(c.isspace() or unicodedata.category(c)[0] == "C" for c in text):
        return "/"
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or text.startswith("//"):
        return "/"
    return text


def _filters(request: web.Request) -> data.TaskFilters:
    try:
        return data.TaskFilters.from_query(request.query)
    except ValueError as error:
        raise web.HTTPBadRequest(text=str(error)) from None


def _referer_path(request: web.Request) -> str:
    referer = request.headers.get("Referer", "")
    if referer.startswith(f"{request.scheme}://{request.host}/"):
        return _safe_next(referer[len(f"{request.scheme}://{request.host}"):])
    return "/"


def _set_flash(response: web.StreamResponse, ok: bool, message: str) -> None:
    value = base64.urlsafe_b64encode(json.dumps({"ok": ok, "text": message[:500]}).encode()).decode()
    response.set_cookie(FLASH_COOKIE, value, path="/", httponly=True, samesite="Strict", max_age=60)


def _read_flash(request: web.Request) -> dict | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    try:
        flash = json.loads(base64.urlsafe_b64decode(value.encode()))
        return {"ok": bool(flash["ok"]), "text": str(flash["text"])}
    except (ValueError, KeyError, TypeError):
        return None


def _json(value: Any) -> web.Response:
    return web.json_response(value, dumps=lambda v: json.dumps(v, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    if hasattr(value, "__dict__"):
        return vars(value)
    return str(value)
