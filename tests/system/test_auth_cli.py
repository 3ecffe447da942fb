"""Users and sign-in through the `orrery` CLI, as a person and a script use them: one `orrery up`
with ``ORRERY_AUTH=required`` for the file, the CLI as a subprocess with its own ORRERY_HOME."""

from __future__ import annotations

import fcntl
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import pytest
from orrery.gateway.domain.users import RACE_S

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.system.stackctl import ORRERY, start, stop, wait_healthy
else:
    from stackctl import ORRERY, start, stop, wait_healthy

pytestmark = pytest.mark.system

OWNER = ("owner@example.com", "owner-password-1")
VIEWER = ("viewer@example.com", "viewer-password-1")
SECRET_VALUE = "sk-ant-test-4f9c2d7e1b"
BAD_TOKEN = "not-a-token"


class Stack(NamedTuple):
    env: dict[str, str]
    url: str
    credentials: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("auth") / "home"
    proc, env = start(home, extra={"ORRERY_AUTH": "required"})
    try:
        wait_healthy(proc, int(env["ORRERY_PORT"]), timeout=60)
        url = f"http://127.0.0.1:{env['ORRERY_PORT']}"
        yield Stack({**env, "ORRERY_URL": url}, url, home / "credentials.json")
    finally:
        stop(proc)


def run(
    env: dict[str, str], *args: str, stdin: str = "", token: str | None = None
) -> subprocess.CompletedProcess[str]:
    extra = {"ORRERY_TOKEN": token} if token else {}
    return subprocess.run(
        [ORRERY, *args],
        env={**env, **extra, "COLUMNS": "200"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """A refusal: exit 2 (as every API command's), and the reason in one line (rich may wrap)."""
    assert result.returncode == 2, result.stdout + result.stderr
    return " ".join((result.stdout + result.stderr).split())


def fields(out: str) -> dict[str, str]:
    """`whoami`'s key/value lines."""
    return {
        key: value.strip()
        for key, _, value in (
            re.split(r"(\s{2,})", line.strip(), maxsplit=1) for line in out.splitlines() if line
        )
    }


def saved(stack: Stack) -> dict[str, dict[str, str]]:
    return msgspec.json.decode(stack.credentials.read_bytes(), type=dict[str, dict[str, str]])


# The tests run in file order and tell one story on one stack: the owner made first, then the
# viewer's day, then their tokens' ends.


def test_first_owner_and_users(stack: Stack) -> None:
    env = stack.env

    # Nobody signed in: refused, and told what to do.
    out = refused(run(env, "board", "list"))
    assert "needs a sign-in: run `orrery login`" in out and "(auth.required)" in out, out
    # No user yet: login says so and points at setup.
    out = refused(run(env, "login", "--email", OWNER[0], "--password-stdin", stdin="x\n"))
    assert "has no users yet" in out and "`orrery user setup` (auth.no_users)" in out, out

    # The first owner; the sign-in is saved, private to the user.
    out = ok(run(env, "user", "setup", "--email", OWNER[0], "--name", "Olive",
                 "--password-stdin", stdin=OWNER[1] + "\n"))  # fmt: skip
    assert f"created the first user, Olive <{OWNER[0]}> (owner); signed in to {stack.url}" in out
    assert stat.S_IMODE(stack.credentials.stat().st_mode) == 0o600
    assert saved(stack)[stack.url]["email"] == OWNER[0]
    me = fields(ok(run(env, "whoami")))
    assert me["user"] == f"Olive <{OWNER[0]}>" and me["role"] == "owner", me
    assert me["via"] == "signed in (orrery login)" and me["auth mode"] == "required", me
    out = refused(run(env, "user", "setup", "--email", "b@example.com", "--name", "B",
                      "--password-stdin", stdin="whatever-123\n"))  # fmt: skip
    assert "(auth.setup_done)" in out

    # A viewer, made by the owner.
    out = ok(run(env, "user", "create", "--email", VIEWER[0], "--name", "Vic", "--role", "viewer",
                 "--password-stdin", stdin=VIEWER[1] + "\n"))  # fmt: skip
    assert f"created user Vic <{VIEWER[0]}> (viewer)" in out
    listed = ok(run(env, "user", "list"))
    assert OWNER[0] in listed and VIEWER[0] in listed
    assert re.search(r"role\s+viewer", ok(run(env, "user", "show", VIEWER[0])))
    ok(run(env, "board", "new", "Owned"))


def test_viewer_keys_secrets_and_defaults(stack: Stack) -> None:
    env = stack.env

    # A wrong password, then the viewer: reads work, changes are refused.
    out = refused(run(env, "login", "--email", VIEWER[0], "--password-stdin", stdin="nope-nope\n"))
    assert "(auth.invalid_credentials)" in out
    out = ok(run(env, "login", "--email", VIEWER[0], "--password-stdin", stdin=VIEWER[1] + "\n"))
    assert f"signed in to {stack.url} as Vic <{VIEWER[0]}> (viewer)" in out
    assert "owned" in ok(run(env, "board", "list"))
    out = refused(run(env, "board", "new", "x"))
    assert "this needs the member role; you are viewer (auth.forbidden)" in out, out
    out = refused(run(env, "user", "create", "--email", "c@example.com", "--name", "C",
                      "--password-stdin", stdin="password-123\n"))  # fmt: skip
    assert "(auth.forbidden)" in out

    # An API key: printed once, works as ORRERY_TOKEN until revoked.
    out = ok(run(env, "apikey", "create", "ci"))
    assert "not shown again" in out
    key = re.search(r"^(ork_\S+)$", out, re.MULTILINE)
    assert key, out
    listed = ok(run(env, "apikey", "list"))
    assert key[1] not in listed and key[1][:10] in listed and "ci" in listed
    me = fields(ok(run(env, "whoami", token=key[1])))
    assert me["user"] == f"Vic <{VIEWER[0]}>" and me["via"] == "an API key (ORRERY_TOKEN)", me
    assert "revoked API key ci" in ok(run(env, "apikey", "revoke", "ci"))
    out = refused(run(env, "whoami", token=key[1]))
    assert "ORRERY_TOKEN was refused" in out and "(auth.required)" in out, out
    assert "no API keys" in ok(run(env, "apikey", "list"))

    # A secret: set from stdin, listed as set, its value nowhere.
    outputs = [
        ok(run(env, "secret", "set", "api_key", "ANTHROPIC_API_KEY", "--value-stdin",
               stdin=SECRET_VALUE + "\n")),
        ok(run(env, "secret", "list")),
        ok(run(env, "secret", "list", "--json")),
    ]  # fmt: skip
    assert re.search(r"api_key\s+│\s+ANTHROPIC_API_KEY\s+│\s+yes", outputs[1]), outputs[1]
    assert all(SECRET_VALUE not in out for out in outputs)
    assert SECRET_VALUE.encode() not in stack.credentials.read_bytes()
    ok(run(env, "secret", "clear", "api_key", "ANTHROPIC_API_KEY"))
    assert "no API keys or variables set" in ok(run(env, "secret", "list"))

    # Defaults: merged per agent.
    ok(run(env, "defaults", "set", "codex", "--model", "gpt-5"))
    out = ok(run(env, "defaults", "set", "codex", "--thinking", "off"))
    assert re.search(r"codex\s+│\s+gpt-5\s+│\s+-\s+│\s+off", out), out

    # Own password: the current one is checked.
    out = refused(run(env, "user", "set-password", "--password-stdin",
                      stdin="wrong-current\nnew-password-2\n"))  # fmt: skip
    assert "(auth.invalid_credentials)" in out
    ok(run(env, "user", "set-password", "--password-stdin",
           stdin=f"{VIEWER[1]}\nnew-password-2\n"))  # fmt: skip


def test_refresh_reuse_and_logout(stack: Stack) -> None:
    env = stack.env
    other = "http://127.0.0.1:1"  # another stack's sign-in, in the same file: left alone
    stack.credentials.write_bytes(
        msgspec.json.encode({other: {"access_token": "a", "refresh_token": "r", "email": "o@x"}})
    )
    ok(run(env, "login", "--email", VIEWER[0], "--password-stdin", stdin="new-password-2\n"))
    assert saved(stack)[other]["email"] == "o@x"
    # The same gateway by another address is another key: no sign-in there.
    localhost = {**env, "ORRERY_URL": stack.url.replace("127.0.0.1", "localhost")}
    assert "needs a sign-in" in refused(run(localhost, "whoami"))

    # An expired access token is renewed with the refresh token (rotated), and saved; two
    # commands at once renew it once (a second use of the spent token would end the sign-in).
    before = saved(stack)[stack.url]
    _edit(stack, access_token=BAD_TOKEN)
    with (stack.credentials.parent / ".credentials.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # both get their 401 and wait to renew: then go
        both = [
            subprocess.Popen([ORRERY, "whoami"], env={**env, "COLUMNS": "200"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)
        ]  # fmt: skip
        time.sleep(3)
    for proc in both:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and fields(out)["role"] == "viewer", out
    after = saved(stack)[stack.url]
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] not in (BAD_TOKEN, before["access_token"])
    assert stat.S_IMODE(stack.credentials.stat().st_mode) == 0o600
    assert saved(stack)[other]["email"] == "o@x"

    # A spent refresh token presented again (later than a race would) ends the sign-in
    # everywhere: removed here, the user sent to login, and the current tokens dead too.
    time.sleep(RACE_S + 0.5)
    _edit(stack, access_token=BAD_TOKEN, refresh_token=before["refresh_token"])
    out = refused(run(env, "board", "list"))
    assert f"your sign-in to {stack.url} has ended (this refresh token was already used" in out
    assert "run `orrery login`" in out and "(auth.refresh_reused)" in out, out
    assert stack.url not in saved(stack)
    assert "ORRERY_TOKEN was refused" in refused(run(env, "whoami", token=after["access_token"]))

    # Logout ends the sign-in on the gateway too.
    ok(run(env, "login", "--email", VIEWER[0], "--password-stdin", stdin="new-password-2\n"))
    tokens = saved(stack)[stack.url]
    assert f"signed out of {stack.url} ({VIEWER[0]})" in ok(run(env, "logout"))
    assert stack.url not in saved(stack) and other in saved(stack)
    out = refused(run(env, "board", "list"))
    assert "needs a sign-in: run `orrery login`" in out, out
    out = refused(run(env, "whoami", token=tokens["access_token"]))
    assert "ORRERY_TOKEN was refused" in out, out
    assert "not signed in" in ok(run(env, "logout"))


def _edit(stack: Stack, **changes: str) -> None:
    """Change the saved sign-in in place (as time or another machine would)."""
    all_saved = saved(stack)
    all_saved[stack.url] |= changes
    stack.credentials.write_bytes(msgspec.json.encode(all_saved))
