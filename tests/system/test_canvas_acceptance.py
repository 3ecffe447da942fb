"""The canvas issue's acceptance, through `orrery up`, REST and board WebSockets, with the
sessions service and the project's scripted model server running:

- two WebSocket clients on one board see each other's cursors, drags and moves; a client on
  another board sees none of it; a malformed frame gets a typed error and the socket stays usable;
  a command sent twice with one idempotency key has one effect;
- dropping a worktree card into a zone with a trigger creates a session that receives the
  rendered prompt; moving it inside the zone does not fire again; a show_picker zone offers the
  rendered prompt and runs the user's choice;
- deleting a zone with pinned cards offers unpin or delete;
- a board socket resumes after a seq with no gap and no duplicate;
- the canvas projection rebuilt from the log equals the live one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import websockets
from orrery.modelserver import ScriptedModelServer

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.gitrepos import make_repo as make_test_repo
    from tests.system.stackctl import orrery, start, stop, until, wait_healthy, with_model
else:
    from gitrepos import make_repo as make_test_repo
    from stackctl import orrery, start, stop, until, wait_healthy, with_model

pytestmark = pytest.mark.system

SCRIPT = {
    "rules": [
        {"match": {"last_user_text": "Review one"}, "reply": [{"text": "Reviewed one."}]},
        {"match": {"any": True}, "reply": [{"text": "Hello from the scripted model"}]},
    ]
}
REVIEW = "Review {{ worktree.name }} on {{ worktree.ref }} for {{ board.context.team }}"
REVIEW += " ({{ zone.label }}, {{ repo.name }})"


class Client:
    """One board WebSocket: frames kept in arrival order, read with a predicate."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.read = 0

    @classmethod
    async def open(cls, url: str) -> Client:
        return cls(await websockets.connect(url))

    async def next(self, want: Any, limit: float = 20.0) -> dict[str, Any]:
        """The next frame (after those already taken) that ``want`` accepts."""
        async with asyncio.timeout(limit):
            while True:
                while self.read < len(self.frames):
                    frame = self.frames[self.read]
                    self.read += 1
                    if want(frame):
                        return frame
                self.frames.append(json.loads(await self.ws.recv()))

    async def quiet(self, want: Any, seconds: float) -> list[dict[str, Any]]:
        """Frames ``want`` accepts arriving within ``seconds`` (expected: none)."""
        got = []
        try:
            while True:
                got.append(await self.next(want, seconds))
        except TimeoutError:
            return got

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))


def event(kind: str) -> Any:
    return lambda f: f["type"] == "event" and f["event_type"] == f"canvas.{kind}"


def frame(kind: str, **match: Any) -> Any:
    return lambda f: f["type"] == kind and all(f.get(k) == v for k, v in match.items())


def test_the_canvas_end_to_end(tmp_path: Path) -> None:  # noqa: PLR0915 - one story
    repo = make_test_repo(tmp_path / "src" / "app", "", {"README.md": "app\n"}, {})
    with ScriptedModelServer(SCRIPT) as model:
        proc, env = start(
            tmp_path / "home",
            extra=with_model(model.url, 30),
        )
        port = int(env["ORRERY_PORT"])
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        ws = f"ws://127.0.0.1:{port}/ws/boards"
        try:
            wait_healthy(proc, port, timeout=60)
            assert (
                api.post("/api/repos", json={"source": str(repo), "adopt": True}).status_code == 201
            )
            one = api.post("/api/worktrees", json={"repo": "app", "name": "one"}).json()
            two = api.post("/api/worktrees", json={"repo": "app", "name": "two"}).json()

            created = api.post(
                "/api/boards", json={"name": "Sprint 1", "context": {"team": "core"}}
            )
            assert created.status_code == 201, created.text
            board = created.json()
            assert board["slug"] == "sprint-1"
            taken = api.post("/api/boards", json={"name": "Other", "slug": "sprint-1"})
            assert taken.status_code == 409 and taken.json()["code"] == "board.slug_taken"
            other = api.post("/api/boards", json={"name": "Other"}).json()
            bad = api.post(
                "/api/boards/sprint-1/zones",
                json={"label": "x", "x": 0, "y": 0, "width": 100, "height": 100,
                      "trigger": {"template": "{{ worktree.name "}},
            )  # fmt: skip
            assert bad.status_code == 422 and bad.json()["code"] == "zone.invalid_trigger"

            trigger = {"template": REVIEW, "behavior": "always_new", "permission_mode": "allow-all"}
            review = api.post(
                "/api/boards/sprint-1/zones",
                json={"label": "Review", "x": 0, "y": 0, "width": 1000, "height": 800,
                      "trigger": trigger},
            ).json()  # fmt: skip
            picker = api.post(
                "/api/boards/sprint-1/zones",
                json={"label": "Ship", "x": 2000, "y": 0, "width": 1000, "height": 800,
                      "trigger": {"template": "Ship {{ worktree.name }}",
                                  "behavior": "show_picker", "permission_mode": "allow-all"}},
            ).json()  # fmt: skip
            expected_prompt = "Review one on one for core (Review, app)"

            async def multiplayer() -> int:
                ada = await Client.open(f"{ws}/sprint-1?name=Ada")
                snapshot = await ada.next(frame("snapshot"))
                assert {z["label"] for z in snapshot["board"]["zones"]} == {"Review", "Ship"}
                await ada.next(frame("presence"))
                bob = await Client.open(f"{ws}/sprint-1?name=Bob")
                await bob.next(frame("snapshot"))
                pile = await bob.next(frame("presence"))
                assert [v["name"] for v in pile["viewers"]] == ["Ada"]
                await ada.next(frame("joined", name="Bob"))
                eve = await Client.open(f"{ws}/{other['slug']}?name=Eve")
                await eve.next(frame("presence"))

                # Cursors and drag frames reach the other viewer of the board, nobody else.
                await ada.send({"type": "cursor", "x": 10, "y": 20})
                seen = await bob.next(frame("cursor"))
                assert (seen["name"], seen["x"], seen["y"]) == ("Ada", 10, 20)
                await bob.send({"type": "cursor", "x": 5, "y": 6})
                assert (await ada.next(frame("cursor")))["name"] == "Bob"
                await ada.send({"type": "drag", "worktree_id": one["id"], "x": 50, "y": 60})
                assert (await bob.next(frame("drag")))["worktree_id"] == one["id"]

                # A malformed frame: a typed error, and the socket keeps working.
                await ada.send("{not json")
                assert (await ada.next(frame("error")))["code"] == "frame.invalid"
                await ada.send({"type": "command", "id": "cmd-unknown-1", "command": {"type": "x"}})
                assert (await ada.next(frame("rejected")))["code"] == "frame.unknown_command"

                # The drop into the trigger zone: one command, sent twice, one effect.
                drop: dict[str, Any] = {
                    "type": "command",
                    "id": "drop-one-0001",
                    "command": {"type": "canvas.MoveCard", "worktree_id": one["id"],
                                "x": 100, "y": 100},
                }  # fmt: skip
                await ada.send(drop)
                assert (await ada.next(frame("accepted", id="drop-one-0001")))["seq"] > 0
                moved = await bob.next(event("CardMoved"))
                assert moved["event"]["zone_id"] == review["id"]
                await bob.next(event("ZoneTriggerRequested"))
                fired = (await bob.next(event("ZoneTriggerFired")))["event"]
                assert fired["prompt"] == expected_prompt and fired["action"] == "new_session"
                await ada.send(drop)
                again = await ada.next(frame("accepted", id="drop-one-0001"))
                assert again["duplicate"] is True
                assert await bob.quiet(event("CardMoved"), 1.5) == []

                # Moving inside the zone: a move, no trigger.
                inside = {**drop, "id": "drop-one-0002"}
                inside["command"] = {**drop["command"], "x": 300, "y": 250}
                await bob.send(inside)
                await bob.next(frame("accepted", id="drop-one-0002"))
                assert (await ada.next(event("CardMoved")))["event"]["x"] == 300
                assert await ada.quiet(event("ZoneTriggerRequested"), 2.0) == []

                assert await eve.quiet(lambda f: f["type"] != "pong", 0.5) == []
                last_seq: int = moved["seq"]
                await bob.ws.close()
                assert (await ada.next(frame("left")))["name"] == "Bob"
                for client in (ada, eve):
                    await client.ws.close()
                return last_seq

            resume_from = asyncio.run(multiplayer())

            # The fired trigger made a session in the worktree that got the rendered prompt.
            sessions = until(lambda: api.get("/api/sessions", params={"worktree": "one"}).json())
            assert len(sessions) == 1
            session = sessions[0]
            assert session["title"] == 'Session from zone "Review"'
            assert session["board_id"] == board["id"]
            tasks = until(
                lambda: [
                    t
                    for t in api.get(f"/api/sessions/{session['id']}/tasks").json()
                    if t["status"] == "completed"
                ]
            )
            assert tasks[0]["prompt"] == expected_prompt
            messages = api.get(f"/api/sessions/{session['id']}/messages").json()
            assert messages[-1]["blocks"] == [{"type": "text", "text": "Reviewed one."}]
            assert len(api.get("/api/sessions", params={"worktree": "one"}).json()) == 1

            # show_picker: the rendered prompt is offered; the user's edited choice runs.
            placed = api.put("/api/boards/sprint-1/cards/two", json={"x": 2100, "y": 100})
            assert placed.status_code == 200, placed.text
            assert placed.json()["card"]["worktree_id"] == two["id"]
            offered_id = placed.json()["trigger"]["id"]
            offered = until(
                lambda: (
                    t
                    if (t := api.get(f"/api/boards/sprint-1/triggers/{offered_id}").json())[
                        "status"
                    ]
                    == "offered"
                    else None
                )
            )
            assert offered["prompt"] == "Ship two" and offered["zone_id"] == picker["id"]
            chosen = api.post(
                f"/api/boards/sprint-1/triggers/{offered_id}/choose",
                json={"action": "new_session", "prompt": "Ship two carefully"},
            )
            assert chosen.status_code == 200 and chosen.json()["status"] == "fired"
            assert (
                api.post(f"/api/boards/sprint-1/triggers/{offered_id}/dismiss").json()["code"]
                == "trigger.not_pending"
            )
            shipped = until(lambda: api.get("/api/sessions", params={"worktree": "two"}).json())
            until(
                lambda: [
                    t
                    for t in api.get(f"/api/sessions/{shipped[0]['id']}/tasks").json()
                    if t["prompt"] == "Ship two carefully" and t["status"] == "completed"
                ]
            )

            # Deleting a zone with a pinned card: refused with the choice, then unpinned.
            before = api.get("/api/boards/sprint-1").json()
            card = next(c for c in before["cards"] if c["worktree_id"] == one["id"])
            refused = api.delete(f"/api/boards/sprint-1/zones/{review['id']}")
            assert refused.status_code == 409
            assert refused.json()["code"] == "zone.has_cards"
            assert refused.json()["detail"]["worktrees"] == [one["id"]]
            assert refused.json()["detail"]["choices"] == ["unpin", "remove"]
            after = api.delete(
                f"/api/boards/sprint-1/zones/{review['id']}", params={"cards": "unpin"}
            ).json()
            kept = next(c for c in after["cards"] if c["worktree_id"] == one["id"])
            assert kept["zone_id"] is None
            assert (kept["abs_x"], kept["abs_y"]) == (card["abs_x"], card["abs_y"])
            assert [z["label"] for z in after["zones"]] == ["Ship"]

            # Comments: a thread with a reply and a reaction.
            root = api.post(
                "/api/boards/sprint-1/comments",
                json={"content": "Why here?", "anchor": {"kind": "zone",
                      "target_id": picker["id"], "x": 5, "y": 5}},
            ).json()  # fmt: skip
            api.post("/api/boards/sprint-1/comments", json={"content": "ok", "parent": root["id"]})
            reacted = api.post(
                f"/api/boards/sprint-1/comments/{root['id']}/reactions", json={"emoji": "👍"}
            ).json()
            assert reacted["reactions"] == [{"emoji": "👍", "users": ["anonymous"]}]
            assert [r["content"] for r in reacted["replies"]] == ["ok"]
            thread = f"/api/boards/sprint-1/comments/{root['id']}"
            assert api.post(f"{thread}/resolve").json()["resolved"] is True
            assert api.post(f"{thread}/reopen").json()["resolved"] is False
            moved = api.patch(thread, json={"content": "Why here, really?",
                              "anchor": {"kind": "board", "x": 1, "y": 2}}).json()  # fmt: skip
            assert (moved["content"], moved["edited"], moved["anchor"]["kind"]) == (
                "Why here, really?",
                True,
                "board",
            )
            assert moved["replies"][0]["anchor"] == moved["anchor"]
            spare = api.post("/api/boards/sprint-1/comments", json={"content": "tmp"}).json()
            left = api.delete(f"/api/boards/sprint-1/comments/{spare['id']}").json()
            assert [c["id"] for c in left["comments"]] == [root["id"]]

            # Notes: a markdown sticky added, edited; a text added and deleted; a bad width refused.
            note = api.post(
                "/api/boards/sprint-1/notes", json={"x": 10, "y": 900, "content": "# Plan"}
            )
            assert note.status_code == 201, note.text
            assert (note.json()["kind"], note.json()["content"]) == ("markdown", "# Plan")
            edited = api.patch(
                f"/api/boards/sprint-1/notes/{note.json()['id']}", json={"content": "# Plan B"}
            ).json()
            assert [n["content"] for n in edited["notes"]] == ["# Plan B"]
            text = api.post(
                "/api/boards/sprint-1/notes", json={"kind": "text", "x": 0, "y": 0, "content": "x"}
            ).json()
            gone = api.delete(f"/api/boards/sprint-1/notes/{text['id']}").json()
            assert [n["id"] for n in gone["notes"]] == [note.json()["id"]]
            narrow = api.post("/api/boards/sprint-1/notes", json={"x": 0, "y": 0, "width": 900})
            assert narrow.status_code == 422 and narrow.json()["code"] == "canvas.invalid_size"

            # Resuming the board socket after a seq: exactly the events after it, in order.
            last = api.get("/api/boards/sprint-1").json()["seq"]

            async def tail(after: int) -> list[int]:
                client = await Client.open(f"{ws}/sprint-1?after={after}")
                first = await client.next(lambda f: f["type"] in ("event", "snapshot"))
                assert first["type"] == "event"
                seqs = [first["seq"]]
                while seqs[-1] < last:
                    seqs.append((await client.next(frame("event")))["seq"])
                await client.ws.close()
                return seqs

            everything = asyncio.run(tail(1))
            assert everything == sorted(set(everything))
            assert asyncio.run(tail(resume_from)) == [s for s in everything if s > resume_from]

            # The projection rebuilt from the log equals the live one.
            live = api.get("/api/boards/sprint-1").json()
            boards = api.get("/api/boards", params={"all": "true"}).json()
            rebuilt = orrery(env, "projections", "rebuild", "canvas.boards")
            assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
            assert api.get("/api/boards/sprint-1").json() == live
            assert api.get("/api/boards", params={"all": "true"}).json() == boards
        finally:
            api.close()
            stop(proc)
