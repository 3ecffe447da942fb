"""The CLI's HTTP client for the gateway's REST API: where the gateway is, who is calling, and
errors as one clear line (the API's ``{code, message}``), never a traceback.

Credentials, in ``Authorization: Bearer ...``, from the first of:

- ``ORRERY_TOKEN``: a personal API key (``ork_...``) or an access token, for tools and CI;
- the saved sign-in for this gateway in ``$ORRERY_HOME/credentials.json`` (``orrery login``).

A call answered 401 with a saved sign-in trades its refresh token for a new pair once (the
gateway rotates them: the old one is spent), saves it and tries again; when the sign-in has
ended, it is removed and the error says to run ``orrery login``. The refresh runs under a lock
on the file, so two commands at once never present the same refresh token twice (which the
gateway would take for a stolen token, ending the sign-in).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
import msgspec
from orrery.cli import state
from orrery.runtime.errors import RuntimeFailure
from orrery.runtime.settings import Settings

TIMEOUT_S = 330.0  # a clone may take the gateway's full wait (300 s)
TOKEN_ENV = "ORRERY_TOKEN"  # noqa: S105 - the variable's name, not a secret
LOGIN_HINT = "run `orrery login` (or set ORRERY_TOKEN to an API key)"


class ApiCallError(RuntimeFailure):
    def __init__(
        self, status: int, code: str, message: str, detail: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = f"{message} ({code})"
        self.detail = detail or {}


def base_url(settings: Settings) -> str:
    """``ORRERY_URL``, else the running stack's address, else the configured port."""
    explicit = os.environ.get("ORRERY_URL")
    if explicit:
        return explicit.rstrip("/")
    running = state.read(settings.home)
    if running is not None and state.alive(running.pid):
        return running.url
    return f"http://{settings.host}:{settings.port}"


# -- saved sign-ins ------------------------------------------------------------------------------


class SignIn(msgspec.Struct, kw_only=True):
    """One gateway's saved sign-in."""

    access_token: str
    refresh_token: str
    email: str = ""
    saved_at: str = ""

    @classmethod
    def from_tokens(cls, tokens: dict[str, Any]) -> SignIn:
        """From the gateway's ``TokensOut``."""
        user = tokens.get("user") or {}
        return cls(
            access_token=str(tokens["access_token"]),
            refresh_token=str(tokens["refresh_token"]),
            email=str(user.get("email", "")),
            saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )


_signins = msgspec.json.Decoder(dict[str, SignIn])


class Credentials:
    """``$ORRERY_HOME/credentials.json``: the saved sign-ins, keyed by the gateway's base URL (two
    stacks never mix), mode 0600, replaced atomically; changes are made under a lock."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "credentials.json"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held across a read-modify-write (not reentrant: inside, use ``read_all`` and
        ``write_all``)."""
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.home / ".credentials.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def read_all(self) -> dict[str, SignIn]:
        try:
            return _signins.decode(self.path.read_bytes())
        except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            return {}  # none saved, or not ours to read: as if nobody had signed in

    def write_all(self, signins: dict[str, SignIn]) -> None:
        if not signins:
            self.path.unlink(missing_ok=True)
            return
        fd, tmp = tempfile.mkstemp(dir=self.home, prefix=".credentials.", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(msgspec.json.format(msgspec.json.encode(signins)) + b"\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, url: str) -> SignIn | None:
        return self.read_all().get(url)

    def save(self, url: str, signin: SignIn) -> None:
        with self.lock():
            self.write_all({**self.read_all(), url: signin})

    def remove(self, url: str) -> SignIn | None:
        with self.lock():
            signins = self.read_all()
            gone = signins.pop(url, None)
            if gone is not None:
                self.write_all(signins)
            return gone


# -- the client ----------------------------------------------------------------------------------


class Api:
    def __init__(self, settings: Settings) -> None:
        self.url = base_url(settings)
        self.credentials = Credentials(settings.home)
        self.env_token = os.environ.get(TOKEN_ENV, "").strip() or None
        self._client = httpx.Client(base_url=self.url, timeout=TIMEOUT_S)

    def saved(self) -> SignIn | None:
        """This gateway's saved sign-in, if any."""
        return self.credentials.get(self.url)

    def token(self) -> str | None:
        """What the next call presents: ``ORRERY_TOKEN``, else the saved access token. (A live
        view's WebSocket takes it as ``?token=``.)"""
        if self.env_token:
            return self.env_token
        saved = self.saved()
        return saved.access_token if saved else None

    def call(self, method: str, path: str, *, public: bool = False, **kwargs: Any) -> Any:
        """One API call; ``public`` for ``/api/auth/*``: no credentials sent, none renewed."""
        saved = None if self.env_token or public else self.saved()
        token = None if public else self.env_token or (saved.access_token if saved else None)
        response = self._send(method, path, token, **kwargs)
        if response.status_code == 401 and saved is not None:
            renewed = self._refresh(saved)
            response = self._send(method, path, renewed.access_token, **kwargs)
        if response.status_code == 401 and not public:
            self._refused(response)
        return self._answer(response)

    def _send(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        if token:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Bearer {token}"}
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiCallError(
                0,
                "cli.not_running",
                f"no Orrery at {self.url}: start it with `orrery up` (or set ORRERY_URL)",
            ) from None
        except httpx.HTTPError as exc:
            raise ApiCallError(0, "cli.http", f"{method} {path}: {exc}") from None

    def _refresh(self, used: SignIn) -> SignIn:
        """New tokens for the saved sign-in ``used``; when it has ended, it is removed and the
        error says to sign in again."""
        with self.credentials.lock():
            signins = self.credentials.read_all()
            current = signins.get(self.url)
            if current is None:  # signed out meanwhile
                raise ApiCallError(
                    401, "auth.required", f"{self.url} needs a sign-in: {LOGIN_HINT}"
                )
            if current.refresh_token != used.refresh_token:
                return current  # another command renewed it meanwhile
            response = self._send(
                "POST", "/api/auth/refresh", None, json={"refresh_token": current.refresh_token}
            )
            body = _body(response)
            if response.status_code == 200:
                renewed = SignIn.from_tokens(body)
                renewed.email = renewed.email or current.email
                self.credentials.write_all({**signins, self.url: renewed})
                return renewed
            if body.get("code") == "auth.refresh_raced":  # another client renewed it just now
                raise ApiCallError(
                    401,
                    "auth.refresh_raced",
                    f"the sign-in to {self.url} was renewed elsewhere a moment ago: try again",
                )
            if 400 <= response.status_code < 500:  # refused: the sign-in has ended
                del signins[self.url]
                self.credentials.write_all(signins)
                raise ApiCallError(
                    401,
                    str(body.get("code", "auth.refresh_invalid")),
                    f"your sign-in to {self.url} has ended"
                    f" ({body.get('message', response.reason_phrase)}): {LOGIN_HINT}",
                )
        # The gateway is unwell: say so, and keep the sign-in for later.
        raise ApiCallError(
            response.status_code,
            str(body.get("code", f"http.{response.status_code}")),
            f"cannot renew the sign-in to {self.url}:"
            f" {body.get('message', response.reason_phrase)}",
        )

    def _refused(self, response: httpx.Response) -> NoReturn:
        """A final 401, said with what to do about it."""
        body = _body(response)
        code = str(body.get("code", "auth.required"))
        if self.env_token:
            message = f"{TOKEN_ENV} was refused: {body.get('message', 'not valid')}"
        else:
            message = f"{self.url} needs a sign-in: {LOGIN_HINT}"
        raise ApiCallError(401, code, message)

    def _answer(self, response: httpx.Response) -> Any:
        if response.status_code < 400 and not response.content:
            return None  # 204
        try:
            body = response.json()
        except ValueError:
            body = {"code": f"http.{response.status_code}", "message": response.text[:300]}
        if response.status_code == 202 and isinstance(body, dict) and "code" in body:
            raise ApiCallError(202, body["code"], f"{body['message']}; check again later")
        if response.status_code >= 400:
            if not isinstance(body, dict):
                body = {}
            raise ApiCallError(
                response.status_code,
                str(body.get("code", f"http.{response.status_code}")),
                str(body.get("message", response.reason_phrase)),
                body.get("detail") if isinstance(body.get("detail"), dict) else None,
            )
        return body


def _body(response: httpx.Response) -> dict[str, Any]:
    """An answer's JSON object (an error's ``{code, message, detail}``), or one made up."""
    try:
        body = response.json()
    except ValueError:
        return {"code": f"http.{response.status_code}", "message": response.text[:300]}
    return body if isinstance(body, dict) else {}
