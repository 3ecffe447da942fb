"""The git adapter against real git in temp dirs (no network)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from orrery.worktrees.adapters.git import (
    Git,
    GitError,
    GitState,
    _credential_args,
    _environment,
    parse_worktree_list,
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the user's nor the system's git config leaks into these tests."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, name: str, text: str) -> None:
    (repo / name).write_text(text)
    sh(repo, "add", name)
    sh(repo, "commit", "-q", "-m", f"add {name}")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A repo with two commits on main and a `feature` branch with one more."""
    repo = tmp_path / "source"
    repo.mkdir()
    sh(repo, "init", "-q", "-b", "main")
    commit(repo, "README.md", "hello\n")
    commit(repo, ".gitignore", "*.log\n")
    sh(repo, "checkout", "-q", "-b", "feature")
    commit(repo, "feature.txt", "feature\n")
    sh(repo, "checkout", "-q", "main")
    return repo


@pytest.fixture
def gitx() -> Git:
    return Git(timeout=30, network_timeout=60)


@pytest.fixture
async def clone(gitx: Git, source: Path, tmp_path: Path) -> Path:
    await gitx.clone(source.as_uri(), tmp_path / "clone")
    return tmp_path / "clone"


async def test_clone_via_file_url_and_plain_path(gitx: Git, source: Path, tmp_path: Path) -> None:
    by_url = await gitx.clone(source.as_uri(), tmp_path / "repos" / "by-url")
    by_path = await gitx.clone(str(source), tmp_path / "repos" / "by-path")
    main_sha = sh(source, "rev-parse", "main")
    for info in (by_url, by_path):
        assert info.default_branch == "main"
        assert info.branch == "main"
        assert info.head == main_sha
        assert (Path(info.path) / "README.md").read_text() == "hello\n"
    assert by_url.origin_url == source.as_uri()
    assert by_path.origin_url == str(source)


async def test_clone_failures_are_typed(gitx: Git, source: Path, tmp_path: Path) -> None:
    with pytest.raises(GitError) as missing:
        await gitx.clone((tmp_path / "nowhere").as_uri(), tmp_path / "x")
    assert missing.value.code == "git.clone_failed"
    assert "nowhere" in missing.value.message
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    with pytest.raises(GitError) as exists:
        await gitx.clone(source.as_uri(), taken)
    assert exists.value.code == "git.destination_exists"


async def test_token_never_reaches_the_clones_config(
    gitx: Git, source: Path, tmp_path: Path
) -> None:
    token = "ghp_sEcReTtOkEn0123456789"
    info = await gitx.clone(source.as_uri(), tmp_path / "private", token=token)
    config = (Path(info.path) / ".git" / "config").read_text()
    assert token not in config
    assert "credential" not in config  # the helper was passed with `git -c` only
    assert "ORRERY_GIT_TOKEN" not in config
    assert info.origin_url == source.as_uri()
    # Nothing else under .git mentions it either (packed refs, FETCH_HEAD, logs).
    for file in (Path(info.path) / ".git").rglob("*"):
        if file.is_file():
            assert token.encode() not in file.read_bytes(), file
    # Fetch with a token keeps it off disk as well.
    assert await gitx.fetch(info.path, token=token)
    assert token not in (Path(info.path) / ".git" / "config").read_text()


def test_the_credential_helper_answers_get_only_and_bypasses_other_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What git would ask over https: the helper gives the token from the environment, and
    a user's `store` helper is reset away, so a successful auth never saves the token."""
    store = tmp_path / "stored-credentials"
    user_config = tmp_path / "gitconfig"
    user_config.write_text(f"[credential]\n\thelper = store --file {store}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(user_config))
    token = "ghp_fill_me_0123456789"
    args = ["git", *_credential_args(token)]
    env = {**os.environ, **_environment(token)}
    ask = "protocol=https\nhost=github.com\npath=acme/private.git\n\n"
    filled = subprocess.run(
        [*args, "credential", "fill"], input=ask, env=env, capture_output=True, text=True
    )
    assert filled.returncode == 0, filled.stderr
    assert "username=x-access-token" in filled.stdout
    assert f"password={token}" in filled.stdout
    assert token not in " ".join(args)  # not on any command line either
    subprocess.run(
        [*args, "credential", "approve"], input=filled.stdout, env=env, text=True, check=True
    )
    assert not store.exists()
    # Control: without the reset, the user's helper would have stored it.
    subprocess.run(
        ["git", "credential", "approve"], input=filled.stdout, env=env, text=True, check=True
    )
    assert token in store.read_text()


async def test_adopt_and_default_branch(gitx: Git, source: Path, clone: Path) -> None:
    adopted = await gitx.adopt(source)
    assert adopted.default_branch == "main"
    assert adopted.origin_url is None
    # No remote: the current branch.
    sh(source, "checkout", "-q", "feature")
    assert await gitx.default_branch(source) == "feature"
    # Detached without a remote: falls back to main.
    sh(source, "checkout", "-q", "--detach", "main")
    assert await gitx.default_branch(source) == "main"
    # With a remote: origin/HEAD, whatever is checked out.
    sh(clone, "checkout", "-q", "-b", "other")
    assert await gitx.default_branch(clone) == "main"
    assert (await gitx.adopt(clone)).branch == "other"


async def test_adopt_refuses_non_checkouts(gitx: Git, source: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    bare = tmp_path / "bare.git"
    sh(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    for path in (plain, tmp_path / "missing", bare, source / ".git"):
        with pytest.raises(GitError) as caught:
            await gitx.adopt(path)
        assert caught.value.code == "git.not_a_repository", path
    sub = source / "sub"
    sub.mkdir()
    with pytest.raises(GitError, match="inside the repository"):
        await gitx.adopt(sub)


async def test_fetch_is_a_no_op_without_origin(gitx: Git, source: Path, clone: Path) -> None:
    assert await gitx.fetch(source) is False
    commit(source, "later.txt", "later\n")
    assert await gitx.fetch(clone) is True
    assert sh(clone, "rev-parse", "origin/main") == sh(source, "rev-parse", "main")


async def test_worktree_lifecycle(gitx: Git, source: Path, clone: Path, tmp_path: Path) -> None:
    root = tmp_path / "worktrees"
    # The source moves on after the clone: new branches start from the fetched origin/main.
    commit(source, "later.txt", "later\n")
    fresh_main = sh(source, "rev-parse", "main")

    one = await gitx.add_worktree(clone, root / "one", branch="wt-one", base="main")
    two = await gitx.add_worktree(clone, root / "two", branch="wt-two")  # default base
    feat = await gitx.add_worktree(clone, root / "feat", branch="feature", new_branch=False)

    assert one.branch == "wt-one" and one.head == fresh_main
    assert two.branch == "wt-two" and two.head == fresh_main
    assert feat.branch == "feature" and feat.head == sh(source, "rev-parse", "feature")
    assert (root / "feat" / "feature.txt").exists()
    # New branches do not track origin/main (a push must not go to main).
    assert sh(root / "one", "for-each-ref", "--format=%(upstream)", "refs/heads/wt-one") == ""

    listed = await gitx.list_worktrees(clone)
    # The main checkout first; linked worktrees in git's own order (by admin dir name).
    assert listed[0].branch == "main"
    assert sorted(str(w.branch) for w in listed[1:]) == ["feature", "wt-one", "wt-two"]
    assert listed[0].main and not any(w.main for w in listed[1:])
    assert not any(w.prunable or w.detached or w.bare for w in listed)
    assert {Path(w.path).resolve() for w in listed[1:]} == {
        (root / name).resolve() for name in ("one", "two", "feat")
    }

    # State: clean, then dirty with an untracked file, clean again after `clean`.
    assert await gitx.state(root / "one") == GitState(branch="wt-one", head=fresh_main, dirty=False)
    (root / "one" / "scratch.txt").write_text("x")
    (root / "one" / "debug.log").write_text("ignored but removed by -x")
    (root / "one" / "build").mkdir()
    (root / "one" / "build" / "a.o").write_text("o")
    assert (await gitx.state(root / "one")).dirty is True
    assert await gitx.clean(root / "one") == 3  # scratch.txt, debug.log, build/
    assert (await gitx.state(root / "one")).dirty is False
    assert await gitx.clean(root / "one") == 0
    # A tracked modification is dirty too; a detached HEAD has no branch.
    (root / "two" / "README.md").write_text("changed\n")
    assert (await gitx.state(root / "two")).dirty is True
    sh(root / "feat", "checkout", "-q", "--detach")
    detached = await gitx.state(root / "feat")
    assert detached.branch is None and detached.head == feat.head

    # Remove one normally and one deleted by hand: both succeed, neither is listed.
    await gitx.remove_worktree(clone, root / "one")
    shutil.rmtree(root / "two")
    stale = await gitx.list_worktrees(clone)
    assert [w.prunable for w in stale if w.branch == "wt-two"] == [True]
    await gitx.remove_worktree(clone, root / "two")
    await gitx.remove_worktree(clone, root / "two")  # again: still fine
    remaining = await gitx.list_worktrees(clone)
    assert [Path(w.path).resolve() for w in remaining] == [
        clone.resolve(),
        (root / "feat").resolve(),
    ]
    assert not (root / "one").exists()
    # The branches stay: only the checkouts go.
    assert sh(clone, "branch", "--list", "wt-one", "wt-two", "--format=%(refname:short)") == (
        "wt-one\nwt-two"
    )


async def test_add_worktree_from_a_local_base_and_reusing_a_pruned_path(
    gitx: Git, source: Path, tmp_path: Path
) -> None:
    # No origin: base resolves to the local branch; fetch is skipped.
    path = tmp_path / "wt"
    added = await gitx.add_worktree(source, path, branch="from-feature", base="feature")
    assert added.head == sh(source, "rev-parse", "feature")
    shutil.rmtree(path)
    # The stale registration for `path` does not block a new worktree there.
    again = await gitx.add_worktree(source, path, branch="again", base="main")
    assert again.branch == "again"


async def test_typed_errors(gitx: Git, source: Path, clone: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("git.not_a_repository", lambda: gitx.state(plain)),
        ("git.not_a_repository", lambda: gitx.list_worktrees(tmp_path / "missing")),
        ("git.not_a_repository", lambda: gitx.add_worktree(plain, tmp_path / "a", branch="a")),
        (
            "git.unknown_ref",
            lambda: gitx.add_worktree(clone, tmp_path / "b", branch="b", base="nope"),
        ),
        ("git.branch_exists", lambda: gitx.add_worktree(clone, tmp_path / "c", branch="main")),
        (
            "git.unknown_ref",
            lambda: gitx.add_worktree(clone, tmp_path / "d", branch="nope", new_branch=False),
        ),
        ("git.worktree_exists", lambda: gitx.add_worktree(clone, plain, branch="e")),
        (
            "git.invalid_branch",
            lambda: gitx.add_worktree(clone, tmp_path / "f", branch="bad..name"),
        ),
        ("git.not_a_worktree", lambda: gitx.remove_worktree(clone, plain)),
    ]
    for code, call in cases:
        with pytest.raises(GitError) as caught:
            await call()
        assert caught.value.code == code, (code, caught.value)
        assert caught.value.message
    assert not (tmp_path / "b").exists()

    # A branch already checked out in another worktree.
    await gitx.add_worktree(clone, tmp_path / "g", branch="feature", new_branch=False)
    with pytest.raises(GitError) as busy:
        await gitx.add_worktree(clone, tmp_path / "h", branch="feature", new_branch=False)
    assert busy.value.code == "git.branch_checked_out"
    assert "feature" in busy.value.message


async def test_a_hung_git_times_out(source: Path, clone: Path) -> None:
    # The "remote" answers only after 3s; the call is killed after 0.5s.
    sh(clone, "config", "remote.origin.uploadpack", "sleep 3; git-upload-pack")
    with pytest.raises(GitError) as caught:
        await Git(timeout=5, network_timeout=0.5).fetch(clone)
    assert caught.value.code == "git.timeout"


def test_parse_worktree_list() -> None:
    out = "\0".join(
        [
            "worktree /r",
            "HEAD " + "a" * 40,
            "branch refs/heads/main",
            "",
            "worktree /w/x",
            "HEAD " + "b" * 40,
            "detached",
            "locked reason",
            "",
            "worktree /w/y",
            "HEAD " + "c" * 40,
            "branch refs/heads/y",
            "prunable gitdir file points to non-existent location",
            "",
        ]
    )
    parsed = parse_worktree_list(out)
    assert [(w.path, w.branch, w.detached, w.locked, w.prunable, w.main) for w in parsed] == [
        ("/r", "main", False, False, False, True),
        ("/w/x", None, True, True, False, False),
        ("/w/y", "y", False, False, True, False),
    ]
    assert parse_worktree_list("") == []


async def test_the_fast_path_when_the_caller_knows_origin_and_default_branch(
    gitx: Git, source: Path, clone: Path, tmp_path: Path
) -> None:
    """What the reactor does: no lookups, one `git worktree add` (after a fetch with origin),
    the same answers and the same typed errors as the careful path."""
    commit(source, "later.txt", "later\n")  # only a fetch brings this into origin/main
    fresh = sh(source, "rev-parse", "main")
    fast = await gitx.add_worktree(
        clone, tmp_path / "f1", branch="f1", origin=True, default_branch="main"
    )
    assert fast.head == fresh and fast.branch == "f1"
    assert (tmp_path / "f1" / "later.txt").exists()
    local = await gitx.add_worktree(
        source, tmp_path / "f2", branch="f2", origin=False, default_branch="main", base="feature"
    )
    assert local.head == sh(source, "rev-parse", "feature")
    # A tag as base is not a branch: the careful path resolves it.
    sh(source, "tag", "v1", "main")
    tagged = await gitx.add_worktree(
        source, tmp_path / "f3", branch="f3", origin=False, default_branch="main", base="v1"
    )
    assert tagged.head == sh(source, "rev-parse", "v1")
    for code, branch, base in [
        ("git.branch_exists", "f1", None),
        ("git.invalid_branch", "bad..name", None),
        ("git.unknown_ref", "x", "nope"),
    ]:
        with pytest.raises(GitError) as caught:
            await gitx.add_worktree(
                clone,
                tmp_path / "err",
                branch=branch,
                base=base,
                origin=True,
                default_branch="main",
            )
        assert caught.value.code == code, (code, caught.value)
        assert not (tmp_path / "err").exists()
    # A path deleted by hand is reused, through the prune-and-retry.
    shutil.rmtree(tmp_path / "f2")
    again = await gitx.add_worktree(
        source, tmp_path / "f2", branch="f2b", origin=False, default_branch="main"
    )
    assert again.head == sh(source, "rev-parse", "main")
