"""Who you are to the gateway: ``orrery login|logout|whoami``, ``orrery user`` (the first owner,
other users, your password), ``orrery apikey`` (personal API keys for tools and CI),
``orrery secret`` (provider keys and variables for your agents) and ``orrery defaults`` (your
settings for new sessions, per agent).

A sign-in is saved per gateway in ``$ORRERY_HOME/credentials.json`` (mode 0600) and renewed by
the client (``orrery.cli.api``); ``ORRERY_TOKEN`` (an API key) takes precedence over it. Nothing
secret is ever printed, but the API key ``apikey create`` makes, once. Passwords and secret values
come from a prompt that does not echo, or from stdin (``--password-stdin``, ``--value-stdin``).
"""

from __future__ import annotations

import contextlib
import platform
import sys
from typing import Any, Literal
from urllib.parse import quote

import typer
from orrery.cli.api import TOKEN_ENV, Api, ApiCallError, SignIn
from orrery.cli.display import JsonOpt, api, console, kv, print_json, short_ids
from rich.table import Table

user_app = typer.Typer(
    help="Users: the first owner (setup), list, show, create, update, delete; your password."
)
apikey_app = typer.Typer(help="Your personal API keys, for tools and CI (ORRERY_TOKEN).")
secret_app = typer.Typer(
    help="Provider API keys and environment variables for your agents (values never shown)."
)
defaults_app = typer.Typer(help="Your defaults for new sessions, per agent.")

VIA = {
    "anonymous": "anonymous (loopback single-user mode)",
    "access": "signed in (orrery login)",
    "api_key": f"an API key ({TOKEN_ENV})",
    "delegated": "a session's delegated token",
}
PasswordStdin = typer.Option(
    False, "--password-stdin", help="read the password from stdin (one line) instead of a prompt"
)


# -- helpers -------------------------------------------------------------------------------------


def _seg(ref: str) -> str:
    return quote(ref, safe="")


def _when(value: object) -> str:
    return str(value or "")[:19].replace("T", " ")


def _stdin_lines(count: int, what: str) -> list[str]:
    """``count`` lines from stdin (without their line ends), each one not empty."""
    lines = sys.stdin.read().splitlines()
    if len(lines) < count or not all(lines[:count]):
        raise typer.BadParameter(f"stdin must hold {what}, one per line")
    return lines[:count]


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return _stdin_lines(1, "the password")[0]
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _user_line(user: dict[str, Any]) -> str:
    return f"{user.get('name') or '?'} <{user.get('email') or ''}> ({user.get('role')})"


def _sign_in(client: Api, tokens: dict[str, Any]) -> None:
    """Save the new sign-in; end the one it replaces (best effort: it is forgotten anyway)."""
    before = client.saved()
    client.credentials.save(client.url, SignIn.from_tokens(tokens))
    if before is not None:
        with contextlib.suppress(ApiCallError):
            body = {"refresh_token": before.refresh_token}
            client.call("POST", "/api/auth/logout", public=True, json=body)
    if client.env_token:
        console.print(
            f"[yellow]note:[/] {TOKEN_ENV} is set: commands use it, not this sign-in, until it"
            " is unset"
        )


def _setup_needed(client: Api) -> bool | None:
    """Whether the gateway has no user yet (None: cannot tell).

    The API has no public question for it, so this asks ``POST /api/auth/setup`` with a password
    too short to ever be accepted: with users it answers ``auth.setup_done``, without
    ``user.weak_password``. Nothing can be created by it."""
    probe = {"email": "probe@orrery.invalid", "password": "-", "name": "probe"}
    try:
        client.call("POST", "/api/auth/setup", public=True, json=probe)
    except ApiCallError as exc:
        return {"auth.setup_done": False, "user.weak_password": True}.get(exc.code)
    return None


def _setup(client: Api, email: str | None, name: str | None, password_stdin: bool) -> None:
    if password_stdin and (email is None or name is None):
        raise typer.BadParameter("--password-stdin needs --email and --name")
    email = email or str(typer.prompt("Email"))
    name = name or str(typer.prompt("Name"))
    password = _new_password(password_stdin)
    body = {"email": email, "password": password, "name": name}
    tokens = client.call("POST", "/api/auth/setup", public=True, json=body)
    _sign_in(client, tokens)
    console.print(
        f"[green]created[/] the first user, {_user_line(tokens['user'])}; signed in to {client.url}"
    )


# -- login, logout, whoami -----------------------------------------------------------------------


def login(
    email: str | None = typer.Option(None, "--email", help="your email (default: asked)"),
    password_stdin: bool = PasswordStdin,
) -> None:
    """Sign in to the gateway; the sign-in is saved in $ORRERY_HOME/credentials.json."""
    if password_stdin and email is None:
        raise typer.BadParameter("--password-stdin needs --email")
    client = api()
    if _setup_needed(client):
        message = (
            f"{client.url} has no users yet: create the first one (an owner) with"
            " `orrery user setup`"
        )
        if password_stdin or not sys.stdin.isatty():
            raise ApiCallError(0, "auth.no_users", message)
        console.print(message)
        if not typer.confirm("Create it now?"):
            raise typer.Exit(1)
        _setup(client, email, None, password_stdin=False)
        return
    email = email or str(typer.prompt("Email"))
    password = (
        _stdin_lines(1, "the password")[0]
        if password_stdin
        else str(typer.prompt("Password", hide_input=True))
    )
    body = {"email": email, "password": password, "client": f"orrery CLI on {platform.node()}"}
    tokens = client.call("POST", "/api/auth/login", public=True, json=body)
    _sign_in(client, tokens)
    console.print(f"[green]signed in[/] to {client.url} as {_user_line(tokens['user'])}")


def logout() -> None:
    """End the saved sign-in to the gateway (its tokens stop working) and forget it."""
    client = api()
    saved = client.credentials.remove(client.url)
    if saved is None:
        console.print(f"not signed in to {client.url}")
    else:
        try:
            client.call(
                "POST", "/api/auth/logout", public=True, json={"refresh_token": saved.refresh_token}
            )
        except ApiCallError as exc:
            console.print(
                f"[yellow]note:[/] forgotten here, but the gateway did not confirm: {exc.message}"
            )
        console.print(f"[green]signed out[/] of {client.url} ({saved.email or 'unknown email'})")
    if client.env_token:
        console.print(f"[yellow]note:[/] {TOKEN_ENV} is still set: commands keep using it")


def whoami(as_json: bool = JsonOpt) -> None:
    """Who the gateway takes you for: name, email, role, how you are signed in, its auth mode."""
    client = api()
    me = client.call("GET", "/api/me")
    if as_json:
        print_json(me)
        return
    anonymous = me["via"] == "anonymous"
    kv([
        ("gateway", client.url),
        ("user", VIA["anonymous"] if anonymous else f"{me['name']} <{me['email']}>"),
        ("id", me["id"]), ("role", me["role"]),
        ("via", VIA.get(me["via"], me["via"])), ("auth mode", me["auth_mode"]),
    ])  # fmt: skip


# -- users ---------------------------------------------------------------------------------------


@user_app.command("setup")
def user_setup(
    email: str | None = typer.Option(None, "--email", help="the owner's email (default: asked)"),
    name: str | None = typer.Option(None, "--name", help="the owner's name (default: asked)"),
    password_stdin: bool = PasswordStdin,
) -> None:
    """Create the first user, an owner (only while the gateway has none), and sign in as them."""
    _setup(api(), email, name, password_stdin)


def _users_table(users: list[dict[str, Any]]) -> Table:
    table = Table("id", "email", "name", "", "role", "created")
    short = short_ids([u["id"] for u in users])
    for u in users:
        table.add_row(
            short[u["id"]], u["email"], u["name"], u.get("emoji") or "", u["role"],
            _when(u.get("created_at")),
        )  # fmt: skip
    return table


def _show_user(user: dict[str, Any], as_json: bool, verb: str = "") -> None:
    if as_json:
        print_json(user)
    elif verb:
        console.print(f"[green]{verb}[/] user {_user_line(user)}  {user['id']}")
    else:
        kv([
            ("id", user["id"]), ("email", user["email"]), ("name", user["name"]),
            ("emoji", user.get("emoji")), ("role", user["role"]),
            ("created", _when(user.get("created_at"))),
        ])  # fmt: skip


@user_app.command("list")
def user_list(as_json: bool = JsonOpt) -> None:
    """List users."""
    users = api().call("GET", "/api/users")
    if as_json:
        print_json(users)
        return
    if not users:
        console.print("no users yet: create the first one (an owner) with `orrery user setup`")
        return
    console.print(_users_table(users))


@user_app.command("show")
def user_show(
    ref: str = typer.Argument(help="user id, id prefix or email"), as_json: bool = JsonOpt
) -> None:
    """One user."""
    _show_user(api().call("GET", f"/api/users/{_seg(ref)}"), as_json)


@user_app.command("create")
def user_create(  # noqa: PLR0917 - typer maps each option to a parameter
    email: str | None = typer.Option(None, "--email", help="their email (default: asked)"),
    name: str | None = typer.Option(None, "--name", help="their name (default: asked)"),
    role: Literal["viewer", "member", "admin", "owner"] = typer.Option(
        "member", help="what they may do"
    ),
    emoji: str | None = typer.Option(None, help="their avatar emoji"),
    password_stdin: bool = PasswordStdin,
    as_json: bool = JsonOpt,
) -> None:
    """Create a user (admins; only owners make owners). They sign in with `orrery login`."""
    if password_stdin and (email is None or name is None):
        raise typer.BadParameter("--password-stdin needs --email and --name")
    email = email or str(typer.prompt("Email"))
    name = name or str(typer.prompt("Name"))
    body = {"email": email, "name": name, "role": role, "password": _new_password(password_stdin)}
    if emoji is not None:
        body["emoji"] = emoji
    _show_user(api().call("POST", "/api/users", json=body), as_json, "created")


@user_app.command("update")
def user_update(
    ref: str = typer.Argument(help="user id, id prefix or email"),
    name: str | None = typer.Option(None, help="a new name"),
    emoji: str | None = typer.Option(None, help="a new avatar emoji"),
    role: Literal["viewer", "member", "admin", "owner"] | None = typer.Option(
        None, help="a new role (only owners make or unmake owners)"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Change a user's name, emoji or role (admins)."""
    body = {k: v for k, v in {"name": name, "emoji": emoji, "role": role}.items() if v is not None}
    if not body:
        raise typer.BadParameter("nothing to change: give --name, --emoji or --role")
    _show_user(api().call("PATCH", f"/api/users/{_seg(ref)}", json=body), as_json, "updated")


@user_app.command("delete")
def user_delete(ref: str = typer.Argument(help="user id, id prefix or email")) -> None:
    """Delete a user (admins): their sign-ins end and their API keys are revoked."""
    client = api()
    user = client.call("GET", f"/api/users/{_seg(ref)}")
    client.call("DELETE", f"/api/users/{_seg(user['id'])}")
    console.print(f"[green]deleted[/] user {_user_line(user)}  {user['id']}")


@user_app.command("set-password")
def user_set_password(
    password_stdin: bool = typer.Option(
        False,
        "--password-stdin",
        help="read the current password, then the new one, from stdin (one line each)",
    ),
) -> None:
    """Change your own password (asks for the current one first)."""
    if password_stdin:
        current, new = _stdin_lines(2, "the current password and the new one")
    else:
        current = str(typer.prompt("Current password", hide_input=True))
        new = str(typer.prompt("New password", hide_input=True, confirmation_prompt=True))
    me = api().call("PATCH", "/api/me", json={"current_password": current, "password": new})
    console.print(f"[green]changed[/] the password of {_user_line(me)}")


# -- API keys ------------------------------------------------------------------------------------


def _key_ref(keys: list[dict[str, Any]], ref: str) -> dict[str, Any] | None:
    """The key ``ref`` names: its id, its exact name, its shown prefix, or an id prefix."""
    for found in (
        [k for k in keys if k["id"] == ref],
        [k for k in keys if k["name"] == ref],
        [k for k in keys if k["prefix"] == ref],
        [k for k in keys if k["id"].startswith(ref)],
    ):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(f"{k['id']} ({k['name']})" for k in found)
            raise ApiCallError(0, "apikey.ambiguous", f"{ref!r} names {len(found)} keys: {names}")
    return None


@apikey_app.command("list")
def apikey_list(as_json: bool = JsonOpt) -> None:
    """Your API keys (their first characters, never the keys)."""
    keys = api().call("GET", "/api/me/api-keys")
    if as_json:
        print_json(keys)
        return
    if not keys:
        console.print("no API keys")
        return
    table = Table("id", "name", "starts with", "role", "created")
    short = short_ids([k["id"] for k in keys])
    for k in keys:
        table.add_row(
            short[k["id"]], k["name"], k["prefix"], k["role"] or "yours",
            _when(k["created_at"]),
        )  # fmt: skip
    console.print(table)


@apikey_app.command("create")
def apikey_create(
    name: str = typer.Argument(help="what it is for, e.g. ci"),
    role: Literal["viewer", "member", "admin", "owner"] | None = typer.Option(
        None, help="at most this role (default: yours, as it is)"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """A new API key, for ORRERY_TOKEN or `Authorization: Bearer`; printed once, only here."""
    body: dict[str, Any] = {"name": name} | ({"role": role} if role else {})
    key = api().call("POST", "/api/me/api-keys", json=body)
    if as_json:
        print_json(key)
        return
    console.print(
        f"[green]created[/] API key {key['name']}  {key['id']}  role {key['role'] or 'yours'}"
    )
    console.print(key["key"], markup=False, highlight=False, soft_wrap=True)
    console.print(
        "[yellow]Copy it now: it is not shown again.[/] Use it as ORRERY_TOKEN, or as"
        " Authorization: Bearer."
    )


@apikey_app.command("revoke")
def apikey_revoke(
    ref: str = typer.Argument(help="key id, id prefix, name, or its first characters (ork_...)"),
) -> None:
    """Revoke one of your API keys: it stops working at once."""
    client = api()
    key = _key_ref(client.call("GET", "/api/me/api-keys"), ref)
    key_id = key["id"] if key else ref
    client.call("DELETE", f"/api/me/api-keys/{_seg(key_id)}")
    console.print(f"[green]revoked[/] API key {key['name'] if key else ''}  {key_id}".strip())


# -- secrets -------------------------------------------------------------------------------------


@secret_app.command("list")
def secret_list(as_json: bool = JsonOpt) -> None:
    """Which API keys and variables you have set (never their values)."""
    found = api().call("GET", "/api/me/secrets")
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no API keys or variables set")
        return
    table = Table("kind", "name", "set", "updated")
    for s in found:
        table.add_row(s["kind"], s["name"], "yes" if s["set"] else "no", _when(s["updated_at"]))
    console.print(table)


@secret_app.command("set")
def secret_set(
    kind: Literal["api_key", "env"] = typer.Argument(
        help="api_key (a provider's key) or env (a variable)"
    ),
    name: str = typer.Argument(help="e.g. ANTHROPIC_API_KEY"),
    value_stdin: bool = typer.Option(
        False, "--value-stdin", help="read the value from stdin instead of a prompt"
    ),
) -> None:
    """Set a provider API key or an environment variable for your agents (stored encrypted)."""
    if value_stdin:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    else:
        value = str(typer.prompt("Value", hide_input=True))
    if not value:
        raise typer.BadParameter("the value is empty")
    api().call("PUT", f"/api/me/secrets/{kind}/{_seg(name)}", json={"value": value})
    console.print(f"[green]set[/] {kind} {name}")


@secret_app.command("clear")
def secret_clear(
    kind: Literal["api_key", "env"] = typer.Argument(help="api_key or env"),
    name: str = typer.Argument(help="e.g. ANTHROPIC_API_KEY"),
) -> None:
    """Clear a key or variable."""
    api().call("DELETE", f"/api/me/secrets/{kind}/{_seg(name)}")
    console.print(f"[green]cleared[/] {kind} {name}")


# -- defaults ------------------------------------------------------------------------------------


def _defaults_table(defaults: dict[str, dict[str, Any]]) -> Table:
    table = Table("agent", "model", "permission mode", "thinking")
    for agent, d in sorted(defaults.items()):
        table.add_row(
            agent, d.get("model") or "-", d.get("permission_mode") or "-", d.get("thinking") or "-"
        )
    return table


@defaults_app.command("show")
def defaults_show(as_json: bool = JsonOpt) -> None:
    """Your defaults for new sessions ("-": the agent's own)."""
    defaults = api().call("GET", "/api/me/defaults")
    if as_json:
        print_json(defaults)
        return
    if not defaults:
        console.print("no defaults set: new sessions use each agent's own")
        return
    console.print(_defaults_table(defaults))


@defaults_app.command("set")
def defaults_set(  # noqa: PLR0917 - typer maps each option to a parameter
    agent: Literal["builtin", "claude-code", "codex", "gemini", "opencode"] = typer.Argument(
        help="the agent these are for"
    ),
    model: str | None = typer.Option(None, help="model name"),
    permission_mode: Literal["ask", "auto", "allow-all"] | None = typer.Option(
        None, help="ask before tools that change files or run commands, or don't"
    ),
    thinking: Literal["auto", "off"] | None = typer.Option(None, help="extended thinking"),
    clear: bool = typer.Option(
        False, "--clear", help="first reset all three to the agent's own (then apply the others)"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Set your defaults for one agent's new sessions (options not given stay as they are)."""
    client = api()
    given = {"model": model or None, "permission_mode": permission_mode, "thinking": thinking}
    if not clear and model is None and permission_mode is None and thinking is None:
        raise typer.BadParameter(
            "nothing to change: give --model, --permission-mode, --thinking or --clear"
        )
    before = {} if clear else client.call("GET", "/api/me/defaults").get(agent) or {}
    body = {k: before.get(k) for k in given} | {
        k: v for k, v in given.items() if v is not None or (k == "model" and model == "")
    }
    after = client.call("PUT", f"/api/me/defaults/{agent}", json=body)
    if as_json:
        print_json(after)
        return
    console.print(_defaults_table({agent: after.get(agent) or {}}))
