"""The JSON API under /api, and the three pages (seat, student, trainer).

Every answer is JSON or a static page: the pages fill themselves in with `textContent` (never
HTML from data), and the Content-Security-Policy allows no inline script, so text a student's
host printed, or a name a student typed, can never run in the trainer's browser.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import tornado.web

from .access import Session, same_secret
from .errors import WebError

if TYPE_CHECKING:
    from .server import WebApp

COOKIE = "classroom_session"
CSRF_HEADER = "X-CSRF-Token"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the trainer URL carries the admin token
    "X-Frame-Options": "DENY",
}


class Handler(tornado.web.RequestHandler):
    @property
    def web(self) -> WebApp:
        return self.application.settings["web"]

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        self.set_header("Cache-Control", "no-store")

    # --- who is asking -----------------------------------------------------------------------------
    def session(self) -> Session | None:
        """The cookie's session, or (for scripts) the admin token as a bearer: a trainer."""
        bearer = self.request.headers.get("Authorization", "")
        if bearer.startswith("Bearer "):
            if same_secret(bearer[len("Bearer "):].strip(), self.web.admin_token):
                return Session(token="", csrf="", trainer=True)
            raise WebError(401, "wrong admin token")
        return self.web.sessions.get(self.get_cookie(COOKIE))

    def student(self) -> str:
        session = self.session()
        if session is None:
            raise WebError(401, "sign in first")
        if session.student is None:
            raise WebError(403, "this page is a student's: sign in with your sheet")
        return session.student

    def trainer(self) -> Session:
        session = self.session()
        if session is None or not session.trainer:
            raise WebError(403, "the trainer's only: open the trainer URL that `classroom web` printed")
        return session

    def address(self) -> str:
        return self.request.remote_ip or "?"

    # --- what is sent ------------------------------------------------------------------------------
    def check_origin_header(self) -> None:
        """A browser always says where a POST comes from: it must be this very site."""
        origin = self.request.headers.get("Origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.netloc != self.request.host or parts.scheme != self.request.protocol:
                raise WebError(403, "this request came from another site: refused")

    def json_body(self, session: Session | None = None) -> dict[str, Any]:
        """A state-changing request's JSON body, once it passed the CSRF checks: JSON only (a form
        of another site cannot send it without asking), the same origin, and for a cookie session
        the session's CSRF token in a header."""
        self.check_origin_header()
        if self.request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise WebError(415, "send JSON (Content-Type: application/json)")
        if session is not None and session.token and not same_secret(
                self.request.headers.get(CSRF_HEADER, ""), session.csrf):
            raise WebError(403, f"missing or wrong {CSRF_HEADER} header: reload the page")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise WebError(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise WebError(400, "the body must be a JSON object")
        return body

    def start_session(self, session: Session) -> None:
        self.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", secure=self.web.tls, path="/")

    def send(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(value))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A WebError's status and message, else the status's own words (never a traceback)."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, WebError):
            self.send({"error": error.message}, error.status)
        else:
            self.send({"error": self._reason}, status_code)

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, WebError):  # an answer, not a fault
            super().log_exception(typ, value, tb)


class NotFound(Handler):
    def prepare(self) -> None:
        raise WebError(404, "no such page: students start at /, the trainer at the URL `classroom web` printed")


# --- signing in ------------------------------------------------------------------------------------
class LoginHandler(Handler):
    def post(self) -> None:
        body = self.json_body()
        address = self.address()
        limiter = self.web.limiter
        wait = limiter.wait_seconds(address)
        if wait:
            raise WebError(429, f"too many failed sign-ins from your address: try again in {wait} s")
        service = self.web.service
        try:
            student = service.resolve(body.get("student"))
        except WebError:
            limiter.failed(address)
            raise
        expected = service.password(student)
        if expected is None or not same_secret(str(body.get("password") or ""), expected):
            limiter.failed(address)
            raise WebError(401, "wrong name or password: type them as your sheet shows them")
        limiter.succeeded(address)
        self._signed_in(student)

    def _signed_in(self, student: str) -> None:
        session = self.web.sessions.new(student=student)
        self.start_session(session)
        self.send({"student": student, "csrf": session.csrf})


class ClaimHandler(LoginHandler):
    """A free seat for whoever has the class code (`web.self_service: true`)."""

    def post(self) -> None:
        body = self.json_body()
        if not self.web.self_service:
            raise WebError(403, "seats are given by the trainer here: sign in with the name and password of your sheet")
        address = self.address()
        wait = self.web.limiter.wait_seconds(address)
        if wait:
            raise WebError(429, f"too many failed sign-ins from your address: try again in {wait} s")
        if not same_secret(str(body.get("code") or "").strip().upper(), self.web.class_code):
            self.web.limiter.failed(address)
            raise WebError(401, "wrong class code: type the one on the trainer's screen")
        service = self.web.service
        seat = service.resolve(body["seat"]) if body.get("seat") else None
        student = self.web.seats.claim(body.get("name"), service.students(), seat)
        self.web.service.roster.forget()
        self._signed_in(student)


class LogoutHandler(Handler):
    def post(self) -> None:
        session = self.session()
        self.json_body(session)
        if session is not None:
            self.web.sessions.drop(session.token)
        self.clear_cookie(COOKIE, path="/")
        self.send({"ok": True})


class PublicHandler(Handler):
    """What the seat page needs before anyone signs in."""

    def get(self) -> None:
        self.send({"classroom": self.web.service.room.name, "self_service": self.web.self_service})


# --- a student's own seat --------------------------------------------------------------------------
class MeHandler(Handler):
    async def get(self) -> None:
        student = self.student()
        entry = await self.web.service.entry(student)
        session = self.session()
        name = self.web.seats.names().get(student)
        self.send({**entry, "name": name, "csrf": session.csrf if session else ""})


class RosterEntryHandler(Handler):
    """One student's entry: that student's own, or any for the trainer; 403 for anyone else."""

    async def get(self, who: str) -> None:
        session = self.session()
        if session is None:
            raise WebError(401, "sign in first")
        student = self.web.service.resolve(who)
        if not session.trainer and session.student != student:
            raise WebError(403, "you can only see your own seat")
        entry = await self.web.service.entry(student)
        self.send({**entry, "name": self.web.seats.names().get(student)})


# --- the trainer -----------------------------------------------------------------------------------
class StatusHandler(Handler):
    async def get(self) -> None:
        self.trainer()
        self.send(await self.web.service.status.get())


class ProgressHandler(Handler):
    async def get(self) -> None:
        self.trainer()
        self.send(await self.web.service.progress.get())


class ClassHandler(Handler):
    """What the dashboard shows besides status: the class code, who claimed which seat."""

    def get(self) -> None:
        session = self.trainer()
        self.send({"classroom": self.web.service.room.name, "self_service": self.web.self_service,
                   "class_code": self.web.class_code if self.web.self_service else None,
                   "students": self.web.service.students(), "names": self.web.seats.names(),
                   "student_url": self.web.student_url, "csrf": session.csrf})


class ResetHandler(Handler):
    async def post(self, who: str) -> None:
        body = self.json_body(self.trainer())
        hard = body.get("hard", False)
        if not isinstance(hard, bool):
            raise WebError(400, '"hard" must be true or false')
        student = self.web.service.resolve(who)
        self.send(await self.web.service.reset(student, hard))


class ExtendHandler(Handler):
    async def post(self) -> None:
        body = self.json_body(self.trainer())
        self.send(await self.web.service.extend(str(body.get("duration") or "")))


# --- pages -----------------------------------------------------------------------------------------
class PageHandler(Handler):
    def page(self, name: str) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.web.page(name))


class SeatPage(PageHandler):
    def get(self) -> None:
        self.page("seat.html")


class StudentPage(PageHandler):
    def get(self) -> None:
        session = self.web.sessions.get(self.get_cookie(COOKIE))
        if session is None or session.student is None:
            self.redirect("/")
            return
        self.page("student.html")


class TrainerPage(PageHandler):
    """`/trainer?token=...` (the URL printed) trades the token for a cookie, then drops it from
    the address bar; `/trainer` with that cookie is the dashboard."""

    def get(self) -> None:
        token = self.get_query_argument("token", None)
        if token is not None:
            if not same_secret(token, self.web.admin_token):
                raise WebError(403, "wrong admin token: open the trainer URL that `classroom web` printed")
            self.start_session(self.web.sessions.new(trainer=True))
            self.redirect("/trainer")
            return
        session = self.web.sessions.get(self.get_cookie(COOKIE))
        if session is None or not session.trainer:
            raise WebError(403, "the trainer's only: open the trainer URL that `classroom web` printed")
        self.page("trainer.html")
