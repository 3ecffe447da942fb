"""`orrery events tail` and docs/examples/subscribe.py against `orrery up` (started once for the
file): boards made through REST, their events read back from JetStream as a tool reads them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import pytest

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.system.stackctl import ORRERY, orrery, start, stop, wait_healthy
else:
    from stackctl import ORRERY, orrery, start, stop, wait_healthy

pytestmark = pytest.mark.system

SUBSCRIBE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "subscribe.py"


class Stack(NamedTuple):
    env: dict[str, str]
    api: httpx.Client


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    proc, env = start(tmp_path_factory.mktemp("events") / "home")
    api = httpx.Client(base_url=f"http://127.0.0.1:{env['ORRERY_PORT']}", timeout=30)
    try:
        wait_healthy(proc, int(env["ORRERY_PORT"]), timeout=60)
        yield Stack(env, api)
    finally:
        api.close()
        stop(proc)


def board(stack: Stack, slug: str) -> dict[str, Any]:
    response = stack.api.post("/api/boards", json={"name": slug.title(), "slug": slug})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def zone(stack: Stack, slug: str, label: str) -> dict[str, Any]:
    body = {"label": label, "x": 0, "y": 0, "width": 400, "height": 300}
    response = stack.api.post(f"/api/boards/{slug}/zones", json=body)
    assert response.status_code == 201, response.text
    added: dict[str, Any] = response.json()
    return added


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_tail_a_board_from_the_start(stack: Stack) -> None:
    b = board(stack, "tail-one")
    out = ok(orrery(stack.env, "events", "tail", "--board", "tail-one", "--from-start",
                    "--count", "1", "--json"))  # fmt: skip
    [line] = events(out)
    assert line["type"] == "canvas.BoardCreated"
    assert line["stream"] == "CANVAS_EVENTS" and line["subject"] == f"canvas.evt.board.{b['id']}"
    assert line["event"] == {
        "type": "canvas.BoardCreated", "board_id": b["id"], "name": "Tail-One",
        "slug": "tail-one", "icon": "", "color": None, "background_color": None,
        "description": "", "context": {},
    }  # fmt: skip
    assert line["version"] == 1 and line["actor"] and line["id"]
    assert isinstance(line["seq"], int) and line["seq"] >= 1
    assert datetime.fromisoformat(line["occurred_at"]).tzinfo is not None, line

    # By an id prefix, one line per event for people: seq, type, subject and the body in brief.
    out = ok(orrery(stack.env, "events", "tail", "--board", b["id"][:13], "--from-start",
                    "--count", "1"))  # fmt: skip
    assert "canvas.BoardCreated" in out and f"canvas.evt.board.{b['id']}" in out, out
    assert "name=Tail-One slug=tail-one" in out and len(out.splitlines()) == 1, out


def test_type_filters(stack: Stack) -> None:
    board(stack, "tail-two")
    z = zone(stack, "tail-two", "Review")
    out = ok(orrery(stack.env, "events", "tail", "--board", "tail-two", "--type",
                    "canvas.ZoneAdded", "--from-start", "--count", "1", "--json"))  # fmt: skip
    [line] = events(out)
    assert line["type"] == "canvas.ZoneAdded", line
    assert (
        line["event"]["zone"]["zone_id"] == z["id"] and line["event"]["zone"]["label"] == "Review"
    )

    # No board: the type's context (canvas) only; --last 1 is this zone, the newest one there.
    out = ok(orrery(stack.env, "events", "tail", "--type", "canvas.ZoneAdded", "--last", "1",
                    "--count", "1", "--json"))  # fmt: skip
    [line] = events(out)
    assert line["event"]["zone"]["zone_id"] == z["id"], line
    # A pattern, and --last counting only what the filter keeps.
    out = ok(orrery(stack.env, "events", "tail", "--board", "tail-two", "--type", "canvas.Board*",
                    "--last", "1", "--count", "1", "--json"))  # fmt: skip
    assert [e["type"] for e in events(out)] == ["canvas.BoardCreated"]

    # A tag no event has: a usage error naming the close ones.
    result = orrery(stack.env, "events", "tail", "--type", "canvas.ZoneAdd")
    assert result.returncode == 2 and "did you mean canvas.ZoneAdded" in result.stderr, result


def test_new_events_live_until_ctrl_c(stack: Stack) -> None:
    board(stack, "tail-three")
    proc = subprocess.Popen(
        [ORRERY, "events", "tail", "--board", "tail-three", "--json"],
        env={**stack.env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert proc.stderr.readline().startswith("following canvas.evt.board.")  # subscribed
        z = zone(stack, "tail-three", "Live")
        line = json.loads(proc.stdout.readline())  # not BoardCreated: only new events
        assert line["type"] == "canvas.ZoneAdded" and line["event"]["zone"]["zone_id"] == z["id"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and out == "" and "Traceback" not in err, err


def test_errors_are_one_line(stack: Stack, tmp_path: Path) -> None:
    result = orrery(stack.env, "events", "tail", "--board", "no-such-board")
    assert result.returncode == 2, result
    assert result.stdout.strip() == "error: no board 'no-such-board' (board.not_found)", result

    idle = {**stack.env, "ORRERY_HOME": str(tmp_path)}
    result = orrery(idle, "events", "tail")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert " ".join(result.stdout.split()).startswith("error: Orrery is not running"), result


def subscribe(stack: Stack, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(SUBSCRIBE), *args],
        env=stack.env,  # the script finds NATS in $ORRERY_HOME/run/stack.json
        capture_output=True,
        text=True,
        timeout=60,
    )
    return ok(result)


def test_the_example_subscriber_resumes_where_it_stopped(stack: Stack) -> None:
    b = board(stack, "tail-four")
    z = zone(stack, "tail-four", "Queue")
    mine = ("--durable", "test-tool", "--subject", f"canvas.evt.board.{b['id']}")
    out = subscribe(stack, *mine, "--count", "1")
    tag, subject, body = out.strip().split(" ", 2)
    assert (tag, subject) == ("canvas.BoardCreated", f"canvas.evt.board.{b['id']}"), out
    assert json.loads(body)["slug"] == "tail-four"

    # The durable consumer kept its place: the next run starts after the acknowledged event.
    tag, _, body = subscribe(stack, *mine, "--max", "1").strip().split(" ", 2)
    assert tag == "canvas.ZoneAdded" and json.loads(body)["zone"]["zone_id"] == z["id"]

    assert "deleted consumer test-tool on CANVAS_EVENTS" in subscribe(stack, *mine, "--delete")
    tag, _, _ = subscribe(stack, *mine, "--count", "1").strip().split(" ", 2)
    assert tag == "canvas.BoardCreated"  # a new consumer starts from the log's beginning
