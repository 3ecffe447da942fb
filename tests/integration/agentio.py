"""What the provider tests stand in for the runner with: an ``AgentIO`` that records what the
provider produced (deltas, messages, permission requests, native ids) and answers permission
requests as told."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from orrery.events.sessions import Block, MessageRecorded, TextBlock


class Recorder:
    def __init__(self, allow: bool = True, steer: str = "") -> None:
        self.allow = allow
        self.steer = steer  # a prompt steered in once the first message is recorded
        self.deltas: list[tuple[str, str, str]] = []
        self.messages: list[tuple[str, str, list[Block]]] = []
        self.permissions: list[tuple[str, dict[str, Any]]] = []
        self.native_ids: list[str] = []

    async def delta(
        self, message_id: str, kind: Literal["text", "thinking", "tool_input"], text: str
    ) -> None:
        self.deltas.append((message_id, kind, text))

    async def message(
        self,
        message_id: str,
        role: Literal["assistant", "user", "system"],
        blocks: list[Block],
        model: str,
    ) -> None:
        self.messages.append((message_id, role, blocks))

    async def permission(self, tool: str, arguments: Mapping[str, Any]) -> bool:
        self.permissions.append((tool, dict(arguments)))
        return self.allow

    def steered(self) -> list[str]:
        if self.steer and self.messages:
            prompt, self.steer = self.steer, ""
            return [prompt]
        return []

    async def bind(self, native_id: str) -> None:
        self.native_ids.append(native_id)

    def shape(self) -> list[tuple[str, list[str]]]:
        """Each message's role and block types, in order."""
        return [(role, [type(b).__name__ for b in blocks]) for _, role, blocks in self.messages]

    def streamed(self, message_id: str, kind: str) -> str:
        return "".join(t for m, k, t in self.deltas if m == message_id and k == kind)


def user_message(session_id: str, task_id: str, index: int, text: str) -> MessageRecorded:
    return MessageRecorded(
        session_id=session_id,
        task_id=task_id,
        message_id=f"{task_id}:0",
        index=index,
        role="user",
        blocks=[TextBlock(text=text)],
        model="",
    )
