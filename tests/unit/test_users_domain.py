"""The user aggregate: one user per email, refresh-token rotation with reuse detection, keys and
secrets owned per user; and the pieces of auth that are pure (the mode a host allows, sealing,
tokens)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from orrery.events import Event
from orrery.events import gateway as g
from orrery.events.errors import Rejection
from orrery.gateway.auth import mode_for, needed_role
from orrery.gateway.domain import users as d
from orrery.runtime.clock import UUID7
from orrery.runtime.decider import Deps
from orrery.runtime.errors import ConfigurationError
from orrery.runtime.secrets import Keys, SecretError, master_key

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ANN = g.user_id_for("Ann@Example.com")


class Clock:
    def now(self) -> datetime:
        return NOW


def deps() -> Deps:
    return Deps(clock=Clock(), ids=UUID7(), actor="system")


def fold(*events: Event) -> d.User:
    state = d.USER.initial()
    for event in events:
        state = d.USER.evolve(state, event)
    return state


CREATE = g.CreateUser(
    command_id="c1", user_id=ANN, email="Ann@Example.com", name="Ann", role="member",
    password_hash="$argon2id$...",
)  # fmt: skip
CREATED = d.decide_create(CREATE, d.User(), deps())[0]
LOGIN = g.LoginStarted(
    user_id=ANN, login_id="l1", refresh_hash="h1", expires_at=NOW + timedelta(days=30)
)


def refresh(presented: str, new: str) -> g.RefreshLogin:
    return g.RefreshLogin(
        command_id=f"r-{new}", user_id=ANN, login_id="l1", presented_hash=presented,
        refresh_hash=new, expires_at=NOW + timedelta(days=30),
    )  # fmt: skip


def test_the_email_is_the_identity_so_a_second_create_is_refused() -> None:
    assert isinstance(CREATED, g.UserCreated)
    assert CREATED.email == "ann@example.com"
    with pytest.raises(Rejection) as exc:
        d.decide_create(CREATE, fold(CREATED), deps())
    assert exc.value.code == "user.exists"
    forged = g.CreateUser(
        command_id="c2", user_id=ANN, email="bob@example.com", name="Bob", role="owner",
        password_hash="x",
    )  # fmt: skip
    with pytest.raises(Rejection) as exc:
        d.decide_create(forged, d.User(), deps())
    assert exc.value.code == "user.invalid_id"


def test_a_refresh_token_rotates_and_a_spent_one_ends_the_sign_in() -> None:
    state = fold(CREATED, LOGIN)
    first = d.decide_refresh(refresh("h1", "h2"), state, deps())
    assert [type(e) for e in first] == [g.LoginRefreshed]
    first = [msgspec.structs.replace(first[0], rotated_at=NOW - timedelta(minutes=1))]
    state = fold(CREATED, LOGIN, *first)
    # h1 was spent: presenting it again is a stolen copy; the whole family ends
    reused = d.decide_refresh(refresh("h1", "h3"), state, deps())
    assert reused == [g.LoginEnded(user_id=ANN, login_id="l1", reason="reused")]
    state = fold(CREATED, LOGIN, *first, *reused)
    with pytest.raises(Rejection) as exc:
        d.decide_refresh(refresh("h2", "h4"), state, deps())  # the current one is dead too
    assert exc.value.code == "auth.refresh_invalid"


def test_two_refreshes_of_one_token_at_once_are_a_race_not_a_theft() -> None:
    first = d.decide_refresh(refresh("h1", "h2"), fold(CREATED, LOGIN), deps())
    state = fold(CREATED, LOGIN, *first)  # rotated at NOW: the same token again, NOW too
    with pytest.raises(Rejection) as exc:
        d.decide_refresh(refresh("h1", "h3"), state, deps())
    assert exc.value.code == "auth.refresh_raced"  # refused, the sign-in lives on
    late = g.LoginRefreshed(
        user_id=ANN, login_id="l1", refresh_hash="h2", expires_at=NOW + timedelta(days=30),
        rotated_at=NOW - timedelta(seconds=d.RACE_S + 1),
    )  # fmt: skip
    reused = d.decide_refresh(refresh("h1", "h3"), fold(CREATED, LOGIN, late), deps())
    assert [type(e) for e in reused] == [g.LoginEnded]


def test_a_new_password_ends_every_other_sign_in() -> None:
    other = g.LoginStarted(
        user_id=ANN, login_id="l2", refresh_hash="x1", expires_at=NOW + timedelta(days=30)
    )
    change = g.ChangePassword(command_id="p", user_id=ANN, password_hash="new", keep_login="l1")
    events = d.decide_password(change, fold(CREATED, LOGIN, other), deps())
    assert events[1:] == [g.LoginEnded(user_id=ANN, login_id="l2", reason="revoked")]


def test_an_unknown_or_expired_refresh_token_is_refused() -> None:
    state = fold(CREATED, LOGIN)
    with pytest.raises(Rejection) as exc:
        d.decide_refresh(refresh("nope", "h2"), state, deps())
    assert exc.value.code == "auth.refresh_invalid"
    old = g.LoginStarted(user_id=ANN, login_id="l1", refresh_hash="h1", expires_at=NOW)
    with pytest.raises(Rejection) as exc:
        d.decide_refresh(refresh("h1", "h2"), fold(CREATED, old), deps())
    assert exc.value.code == "auth.refresh_expired"


def test_a_deleted_user_signs_in_no_more() -> None:
    state = fold(CREATED, LOGIN, g.UserDeleted(user_id=ANN))
    with pytest.raises(Rejection) as exc:
        d.decide_refresh(refresh("h1", "h2"), state, deps())
    assert exc.value.code == "user.not_found"


def test_secret_names_are_environment_variable_names() -> None:
    bad = g.SetSecret(command_id="s", user_id=ANN, kind="env", name="NOT OK=1", sealed="x")
    with pytest.raises(Rejection) as exc:
        d.decide_set_secret(bad, fold(CREATED), deps())
    assert exc.value.code == "secret.invalid_name"


def test_anonymous_mode_is_for_loopback_only() -> None:
    assert mode_for("", "127.0.0.1") == "anonymous"
    assert mode_for("", "0.0.0.0") == "required"
    assert mode_for("required", "127.0.0.1") == "required"
    with pytest.raises(ConfigurationError, match="loopback"):
        mode_for("anonymous", "0.0.0.0")
    with pytest.raises(ConfigurationError):
        mode_for("yes", "127.0.0.1")


def test_reads_need_a_viewer_changes_a_member_and_environments_an_admin() -> None:
    assert needed_role("GET", "/api/boards") == "viewer"
    assert needed_role("POST", "/api/boards") == "member"
    assert needed_role("POST", "/api/worktrees/{ref}/env/start") == "admin"


def test_sealed_secrets_open_only_for_their_owner_and_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = Keys.from_master(master_key(tmp_path, env={}))
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    sealed = keys.seal(ANN, "api_key", "ANTHROPIC_API_KEY", "sk-secret")
    assert "sk-secret" not in sealed
    assert keys.open(ANN, "api_key", "ANTHROPIC_API_KEY", sealed) == "sk-secret"
    with pytest.raises(SecretError):  # moved to another user: the associated data differs
        keys.open(g.user_id_for("bob@example.com"), "api_key", "ANTHROPIC_API_KEY", sealed)
    other = Keys.from_master(master_key(tmp_path / "elsewhere", env={}))
    with pytest.raises(SecretError):
        other.open(ANN, "api_key", "ANTHROPIC_API_KEY", sealed)
    assert Keys.from_master(master_key(tmp_path, env={})) == keys  # the same key file again
    token = keys.session_token(ANN, "s1", "w1")
    assert keys.verify(token)["sid"] == "s1"  # type: ignore[index]
    assert other.verify(token) is None


def test_a_master_key_readable_by_others_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    master_key(tmp_path, env={})
    (tmp_path / "master.key").chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        master_key(tmp_path, env={})
    with pytest.raises(ConfigurationError, match="32 bytes"):
        master_key(tmp_path, env={"ORRERY_MASTER_KEY": "c2hvcnQ="})
