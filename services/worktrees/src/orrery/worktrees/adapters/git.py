"""The git adapter: clone, adopt, fetch, worktrees, clean and state, through gitpython.

Every call runs a ``git`` subprocess (gitpython's ``Git.execute``) in a worker thread
(``asyncio.to_thread``) with a timeout, never prompts (``GIT_TERMINAL_PROMPT=0``, no
askpass, ssh in batch mode, stdin closed), and fails only with :class:`GitError`.

Tokens for private repos reach git through a credential helper given with the top-level
``git -c`` (never written to ``.git/config``) that reads the token from an environment
variable of the git process, so the token is on neither disk nor any command line.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import git
import msgspec
from orrery.runtime.errors import RuntimeFailure

StrPath = str | os.PathLike[str]

TOKEN_ENV = "ORRERY_GIT_TOKEN"  # noqa: S105 - the variable's name, not a secret

# `-c credential.helper=` (empty) first resets the helper list, so a user's `store` helper
# never sees (and saves) the token; the helper answers only `get`, never `store`/`erase`.
_TOKEN_HELPER = (
    '!f() { test "$1" = get || exit 0; echo username=x-access-token; '
    f'echo "password=${TOKEN_ENV}"; }}; f'
)

_BASE_ENV: Mapping[str, str] = {
    "GIT_TERMINAL_PROMPT": "0",
    # Empty askpass stops git falling back to core.askpass / SSH_ASKPASS (GUI prompts).
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GCM_INTERACTIVE": "never",
}
_SSH_COMMAND = "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"

_MESSAGE_LIMIT = 600
_TIMEOUT_GRACE = 5.0


class GitError(RuntimeFailure):
    """A git operation that failed. ``code`` is stable (``git.*``); ``message`` is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RepoInfo(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    default_branch: str
    branch: str | None
    head: str | None  # None in an empty repository (no commit yet)
    origin_url: str | None


class Worktree(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    head: str | None  # None for a bare entry or an unborn branch
    branch: str | None  # short name; None when detached
    detached: bool = False
    bare: bool = False
    locked: bool = False
    prunable: bool = False
    main: bool = False  # the repository's own checkout (first entry of the list)


class GitState(msgspec.Struct, frozen=True, kw_only=True):
    branch: str | None
    head: str
    dirty: bool


class _Result(msgspec.Struct, frozen=True):
    status: int
    stdout: str
    stderr: str


def _trim(stderr: str, *, secret: str | None = None) -> str:
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.lstrip().startswith("hint:")
    ]
    text = " | ".join(lines) or "git failed without a message"
    if secret:
        text = text.replace(secret, "***")
    if len(text) > _MESSAGE_LIMIT:
        text = "..." + text[-_MESSAGE_LIMIT:]
    return text


def _environment(token: str | None) -> dict[str, str]:
    env = dict(_BASE_ENV)
    if "GIT_SSH_COMMAND" not in os.environ and "GIT_SSH" not in os.environ:
        env["GIT_SSH_COMMAND"] = _SSH_COMMAND
    if token is not None:
        env[TOKEN_ENV] = token
    return env


def _credential_args(token: str | None) -> list[str]:
    if token is None:
        return []
    return ["-c", "credential.helper=", "-c", f"credential.helper={_TOKEN_HELPER}"]


class Git:
    """Async git operations. ``timeout`` bounds each git call; ``network_timeout`` bounds
    clone and fetch, which move data."""

    def __init__(self, *, timeout: float = 60.0, network_timeout: float = 600.0) -> None:
        self._timeout = timeout
        self._network_timeout = network_timeout

    # -- running git ---------------------------------------------------------------

    async def _run(
        self,
        cwd: Path,
        args: Sequence[str],
        *,
        token: str | None = None,
        network: bool = False,
    ) -> _Result:
        timeout = self._network_timeout if network else self._timeout
        command = ["git", *_credential_args(token), *args]
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(_execute, cwd, command, _environment(token), timeout),
                timeout + _TIMEOUT_GRACE,
            )
        except TimeoutError:
            raise GitError(
                "git.timeout", f"git {args[0]} did not finish within {timeout:g}s"
            ) from None

    async def _check(
        self,
        cwd: Path,
        args: Sequence[str],
        code: str,
        *,
        token: str | None = None,
        network: bool = False,
    ) -> str:
        """Run git and return its stdout, or raise ``GitError(code)`` with its stderr."""
        result = await self._run(cwd, args, token=token, network=network)
        if result.status != 0:
            raise _error(code, result, token=token)
        return result.stdout

    async def _repo(self, repo_path: StrPath) -> Path:
        """The path as a directory inside a git working tree, else ``git.not_a_repository``."""
        path = Path(repo_path)
        if not (await _probe(path)).is_dir:
            raise GitError("git.not_a_repository", f"{path} is not a directory")
        result = await self._run(path, ["rev-parse", "--is-inside-work-tree"])
        if result.status != 0 or result.stdout.strip() != "true":
            raise GitError("git.not_a_repository", f"{path} is not a git working tree")
        return path

    async def _ref_exists(self, repo: Path, ref: str) -> bool:
        result = await self._run(repo, ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"])
        return result.status == 0

    async def _has_origin(self, repo: Path) -> bool:
        remotes = await self._check(repo, ["remote"], "git.not_a_repository")
        return "origin" in remotes.split()

    async def _current_branch(self, path: Path) -> str | None:
        result = await self._run(path, ["symbolic-ref", "--quiet", "--short", "HEAD"])
        return result.stdout.strip() if result.status == 0 else None

    async def _head(self, path: Path) -> str | None:
        result = await self._run(path, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
        return result.stdout.strip() if result.status == 0 else None

    # -- repositories --------------------------------------------------------------

    async def clone(self, url: str, dest: StrPath, *, token: str | None = None) -> RepoInfo:
        """Clone ``url`` (``file://``, a local path, https, ssh) into ``dest``.

        ``token`` authenticates https through a one-off credential helper; it is not
        stored in the clone's config nor in its remote URL."""
        if url.startswith("-"):
            raise GitError("git.clone_failed", f"refusing a URL that looks like an option: {url}")
        probe = await _probe(Path(dest))
        target = probe.absolute
        if probe.exists and not probe.empty_dir:
            raise GitError("git.destination_exists", f"{target} exists and is not empty")
        try:
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise GitError("git.clone_failed", f"cannot create {target.parent}: {exc}") from exc
        await self._check(
            target.parent,
            ["clone", "--", url, str(target)],
            "git.clone_failed",
            token=token,
            network=True,
        )
        return await self._info(target)

    async def adopt(self, path: StrPath) -> RepoInfo:
        """Validate an existing local checkout (its root, not bare, not a linked worktree)."""
        repo = Path(path)
        if not (await _probe(repo)).is_dir:
            raise GitError("git.not_a_repository", f"{repo} is not a directory")
        result = await self._run(
            repo,
            [
                "rev-parse",
                "--is-bare-repository",
                "--show-toplevel",
                "--git-dir",
                "--git-common-dir",
            ],
        )
        if result.status != 0:
            raise _error("git.not_a_repository", result)
        lines = result.stdout.splitlines()
        if lines[0] == "true" or len(lines) < 4:
            raise GitError("git.not_a_repository", f"{repo} is a bare repository")
        toplevel, git_dir, common_dir = (Path(line) for line in lines[1:4])
        if not await _same_path(toplevel, repo):
            raise GitError("git.not_a_repository", f"{repo} is inside the repository at {toplevel}")
        if not await _same_path(repo / git_dir, repo / common_dir):
            raise GitError("git.not_a_repository", f"{repo} is a linked worktree, not a checkout")
        return await self._info(repo)

    async def _info(self, repo: Path) -> RepoInfo:
        origin = await self._run(repo, ["remote", "get-url", "origin"])
        return RepoInfo(
            path=str(repo),
            default_branch=await self.default_branch(repo),
            branch=await self._current_branch(repo),
            head=await self._head(repo),
            origin_url=origin.stdout.strip() if origin.status == 0 else None,
        )

    async def default_branch(self, repo_path: StrPath) -> str:
        """``origin/HEAD`` when there is one, else the current branch, else main/master."""
        repo = await self._repo(repo_path)
        result = await self._run(
            repo, ["symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"]
        )
        if result.status == 0 and result.stdout.strip().startswith("origin/"):
            return result.stdout.strip().removeprefix("origin/")
        current = await self._current_branch(repo)
        if current is not None:
            return current
        for candidate in ("main", "master"):
            for ref in (f"refs/heads/{candidate}", f"refs/remotes/origin/{candidate}"):
                if await self._ref_exists(repo, ref):
                    return candidate
        raise GitError("git.unknown_ref", f"no default branch found in {repo}")

    async def fetch(self, repo_path: StrPath, *, token: str | None = None) -> bool:
        """``git fetch --prune origin``; returns False (and does nothing) without an origin."""
        repo = await self._repo(repo_path)
        return await self._fetch(repo, token=token, known_origin=None)

    async def _fetch(self, repo: Path, *, token: str | None, known_origin: bool | None) -> bool:
        if known_origin is None and not await self._has_origin(repo):
            return False
        await self._check(
            repo, ["fetch", "--prune", "origin"], "git.fetch_failed", token=token, network=True
        )
        return True

    # -- worktrees -----------------------------------------------------------------

    async def add_worktree(
        self,
        repo_path: StrPath,
        path: StrPath,
        *,
        branch: str,
        base: str | None = None,
        new_branch: bool = True,
        token: str | None = None,
        origin: bool | None = None,
        default_branch: str | None = None,
    ) -> Worktree:
        """Add a worktree at ``path`` (which must not exist), after a fetch.

        ``new_branch``: create ``branch`` from ``origin/<base>`` if that exists, else from
        the local ``base`` (default: the default branch). Otherwise check out the existing
        ``branch`` (local, or tracked from ``origin/<branch>``).

        Creation is the hot path (bench/worktrees.py): besides the fetch and the add it runs one
        ``for-each-ref``. ``origin`` (whether the repo has one) and ``default_branch``, when the
        caller knows them, save their lookups."""
        repo = Path(repo_path)
        repo_probe, probe = await asyncio.to_thread(
            lambda: (_probe_sync(repo), _probe_sync(Path(path)))
        )
        if not repo_probe.is_dir:
            raise GitError("git.not_a_repository", f"{repo} is not a directory")
        target = probe.absolute
        if probe.exists:
            raise GitError("git.worktree_exists", f"{target} already exists")
        if origin is None or origin:
            await self._fetch(repo, token=token, known_origin=origin)
        start = base or default_branch or (await self.default_branch(repo) if new_branch else "")
        if new_branch and origin is not None:
            # The usual case, in one process: the start point is known (origin/<base> after a
            # fetch, else <base>); git itself refuses an existing branch or a bad name.
            point = f"origin/{start}" if origin else start
            args = ["worktree", "add", "--no-track", "-b", branch, "--", str(target), point]
            result = await self._add(repo, args, branch, new_branch=True)
            if result.status == 0:
                return Worktree(path=str(target), head=await self._head_of(target), branch=branch)
            if not any(m in result.stderr for m in ("invalid reference", "not a valid object")):
                raise _add_error(result, branch)
            # The start point is not where we guessed (a local-only base, a tag, a typo).
        refs = await self._refs(repo, branch, start)
        if new_branch:
            if f"refs/heads/{branch}" in refs:
                raise GitError("git.branch_exists", f"branch {branch!r} already exists")
            point, head = await self._resolve_start(repo, start, refs)
            args = ["worktree", "add", "--no-track", "-b", branch, "--", str(target), point]
        elif f"refs/heads/{branch}" in refs:
            head = refs[f"refs/heads/{branch}"]
            args = ["worktree", "add", "--", str(target), branch]
        elif f"refs/remotes/origin/{branch}" in refs:
            head = refs[f"refs/remotes/origin/{branch}"]
            args = ["worktree", "add", "--track", "-b", branch, "--", str(target)]
            args.append(f"origin/{branch}")
        else:
            raise GitError("git.unknown_ref", f"no branch {branch!r} (nor origin/{branch})")
        result = await self._add(repo, args, branch, new_branch=new_branch)
        if result.status != 0:
            raise _add_error(result, branch)
        return Worktree(path=str(target), head=head, branch=branch)

    async def _add(self, repo: Path, args: list[str], branch: str, *, new_branch: bool) -> _Result:
        result = await self._run(repo, args)
        if result.status != 0 and "already registered" in result.stderr:
            # A registration left for a path deleted by hand: prune it and try again (git made
            # the new branch before refusing; it did not exist before, so it goes too).
            await self._check(repo, ["worktree", "prune"], "git.worktree_prune_failed")
            if new_branch:
                await self._run(repo, ["branch", "-D", "--", branch])
            result = await self._run(repo, args)
        return result

    async def _head_of(self, worktree: Path) -> str | None:
        """HEAD of a worktree just added, read from its files; git answers when they are not
        plain (a packed or reftable ref)."""
        head = await asyncio.to_thread(_read_head, worktree)
        if head is None:
            head = await self._head(worktree)
        return head

    async def _refs(self, repo: Path, branch: str, base: str) -> dict[str, str]:
        """``{refname: sha}`` of the branch and base, locally and on origin, in one process."""
        names = [f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"]
        if base:
            names += [f"refs/heads/{base}", f"refs/remotes/origin/{base}"]
        out = await self._check(
            repo,
            ["for-each-ref", "--format=%(refname) %(objectname)", *names],
            "git.not_a_repository",
        )
        wanted = set(names)
        pairs = (line.split(" ", 1) for line in out.splitlines() if " " in line)
        return {name: sha for name, sha in pairs if name in wanted}

    async def _resolve_start(
        self, repo: Path, base: str, refs: dict[str, str]
    ) -> tuple[str, str | None]:
        """The start point of a new branch and its commit: ``origin/<base>``, the local branch,
        or any other commit-ish (a tag, a sha)."""
        for ref, point in (
            (f"refs/remotes/origin/{base}", f"origin/{base}"),
            (f"refs/heads/{base}", base),
        ):
            if ref in refs:
                return point, refs[ref]
        result = await self._run(repo, ["rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"])
        if result.status == 0:
            return base, result.stdout.strip()
        raise GitError("git.unknown_ref", f"unknown base {base!r} (nor origin/{base})")

    async def list_worktrees(self, repo_path: StrPath) -> list[Worktree]:
        """``git worktree list --porcelain -z``, the main checkout first."""
        repo = await self._repo(repo_path)
        out = await self._check(
            repo, ["worktree", "list", "--porcelain", "-z"], "git.worktree_list_failed"
        )
        return parse_worktree_list(out)

    async def remove_worktree(
        self, repo_path: StrPath, path: StrPath, *, force: bool = True
    ) -> None:
        """Remove the worktree at ``path``. One whose directory is already gone is pruned
        and counts as removed; so does a path git does not know."""
        repo = await self._repo(repo_path)
        target = (await _probe(Path(path))).absolute
        if not (await _probe(target)).exists:
            await self._check(repo, ["worktree", "prune"], "git.worktree_prune_failed")
            return
        args = ["worktree", "remove", *(["--force"] if force else []), "--", str(target)]
        result = await self._run(repo, args)
        if result.status == 0:
            return
        if not (await _probe(target)).exists:  # removed meanwhile (or by git before it failed)
            await self._check(repo, ["worktree", "prune"], "git.worktree_prune_failed")
            return
        code = (
            "git.not_a_worktree"
            if "is not a working tree" in result.stderr
            else "git.worktree_remove_failed"
        )
        raise _error(code, result)

    # -- working tree ----------------------------------------------------------------

    async def clean(self, path: StrPath) -> int:
        """``git clean -fdx``: remove untracked and ignored files; returns how many entries."""
        tree = await self._repo(path)
        out = await self._check(tree, ["clean", "-fdx"], "git.clean_failed")
        return sum(1 for line in out.splitlines() if line.startswith("Removing "))

    async def state(self, path: StrPath) -> GitState:
        """HEAD sha, branch (None when detached) and dirty (untracked files count)."""
        tree = await self._repo(path)
        head = await self._head(tree)
        if head is None:
            raise GitError("git.unknown_ref", f"{tree} has no commit yet")
        status = await self._check(
            tree, ["status", "--porcelain", "-z", "--untracked-files=normal"], "git.status_failed"
        )
        return GitState(branch=await self._current_branch(tree), head=head, dirty=bool(status))


def parse_worktree_list(out: str) -> list[Worktree]:
    """Parse ``git worktree list --porcelain -z``: NUL-ended attributes, records ended by
    an empty attribute."""
    worktrees: list[Worktree] = []
    record: dict[str, str] = {}
    for field in [*out.split("\0"), ""]:
        if field:
            key, _, value = field.partition(" ")
            record[key] = value
            continue
        if "worktree" in record:
            ref = record.get("branch")
            worktrees.append(
                Worktree(
                    path=record["worktree"],
                    head=record.get("HEAD") or None,
                    branch=ref.removeprefix("refs/heads/") if ref else None,
                    detached="detached" in record,
                    bare="bare" in record,
                    locked="locked" in record,
                    prunable="prunable" in record,
                    main=not worktrees,
                )
            )
        record = {}
    return worktrees


class _Probe(msgspec.Struct, frozen=True):
    absolute: Path
    exists: bool
    is_dir: bool
    empty_dir: bool


def _probe_sync(path: Path) -> _Probe:
    absolute = path.absolute()
    is_dir = absolute.is_dir()
    return _Probe(
        absolute=absolute,
        exists=absolute.exists() or absolute.is_symlink(),
        is_dir=is_dir,
        empty_dir=is_dir and not any(absolute.iterdir()),
    )


async def _probe(path: Path) -> _Probe:
    """What is at ``path``, looked at off the event loop."""
    return await asyncio.to_thread(_probe_sync, path)


async def _same_path(a: Path, b: Path) -> bool:
    return await asyncio.to_thread(lambda: a.resolve() == b.resolve())


_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _read_head(worktree: Path) -> str | None:
    """Blocking: ``<worktree>/.git`` -> its git dir -> HEAD -> the loose ref in the common dir."""
    try:
        pointer = (worktree / ".git").read_text().strip()
        if not pointer.startswith("gitdir: "):
            return None
        gitdir = (worktree / pointer.removeprefix("gitdir: ")).resolve()
        head = (gitdir / "HEAD").read_text().strip()
        if _SHA.match(head):
            return head
        if not head.startswith("ref: refs/"):
            return None
        common = gitdir
        if (gitdir / "commondir").is_file():
            common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
        sha = (common / head.removeprefix("ref: ")).read_text().strip()
    except OSError:
        return None
    return sha if _SHA.match(sha) else None


def _add_error(result: _Result, branch: str) -> GitError:
    text = result.stderr
    if "already checked out" in text or "already used by worktree" in text:
        return _error("git.branch_checked_out", result)
    if "is not a valid branch name" in text:
        return _error("git.invalid_branch", result)
    if f"a branch named '{branch}' already exists" in text:
        return _error("git.branch_exists", result)
    return _error("git.worktree_add_failed", result)


def _error(code: str, result: _Result, *, token: str | None = None) -> GitError:
    if "not a git repository" in result.stderr:
        code = "git.not_a_repository"
    elif result.stderr.startswith("Timeout:"):
        code = "git.timeout"
    return GitError(code, _trim(result.stderr, secret=token))


def _execute(cwd: Path, command: list[str], env: dict[str, str], timeout: float) -> _Result:
    """Blocking: one git process through gitpython, killed (with its children) on timeout."""
    try:
        status, stdout, stderr = git.Git(cwd).execute(
            command,
            with_extended_output=True,
            with_exceptions=False,
            kill_after_timeout=timeout,
            env=env,
        )
    except git.GitCommandNotFound as exc:  # the binary, or cwd, is missing
        raise GitError("git.unavailable", f"cannot run git in {cwd}: {exc}") from exc
    except OSError as exc:
        raise GitError("git.unavailable", f"cannot run git in {cwd}: {exc}") from exc
    return _Result(status=status, stdout=stdout, stderr=stderr)
