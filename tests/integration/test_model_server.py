"""The scripted model server over real HTTP, driven by the official SDKs and raw httpx.

Each test starts its own server on a free port; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import msgspec
import openai
import pytest
from orrery.modelserver import ScriptedModelServer, ScriptError, load_script

SCRIPT = """
rules:
  - match: {last_user_text: "write hello", tool_offered: write_file}
    reply: [{tool_use: {name: write_file, input: {file_path: hello.txt, content: "hi\\n"}}}]
  - match: {last_user_text: "write hello", tool_offered: exec_command}
    reply: [{tool_use: {name: exec_command, input: {cmd: "printf 'hi\\\\n' > hello.txt"}}}]
  - match: {last_user_text: "write hello"}
    reply:
      - {thinking: "The user wants a file."}
      - {text: "Writing it now."}
      - {tool_use: {name: Write, input: {file_path: hello.txt, content: "hi\\n"}}}
  - match: {after_tool_result: true, tool_result_text: "created"}
    reply: [{text: "Done: wrote hello.txt"}]
    usage: {input_tokens: 100, output_tokens: 40}
  - match: {last_user_text: "slow"}
    reply: [{text: "0123456789012345678901234567890123456789", chunk_chars: 5, delay_ms: 40}]
  - match: {last_user_text: "overload"}
    reply: [{error: {status: 529, type: overloaded_error, message: "Overloaded", retry: false}}]
  - match: {last_user_text: "rate limit"}
    reply: [{error: {status: 429, message: "Slow down", code: rate_limit_exceeded}}]
  - match: {last_user_text: "break midway"}
    reply: [{text: "partial answer"}, {error: {status: 529, message: "Overloaded"}}]
  - match: {any: true}
    reply: [{text: "Hello from the scripted model"}]
"""

# Real request bodies the agent CLIs sent (from the shared reference samples, kept in the repo).
SAMPLES = Path(__file__).resolve().parent / "fixtures" / "cli-requests"
WRITE_TOOL: Any = {"name": "Write", "input_schema": {"type": "object"}}


@pytest.fixture
async def server() -> AsyncIterator[ScriptedModelServer]:
    async with ScriptedModelServer(SCRIPT) as running:
        yield running


def sse_events(text: str) -> list[tuple[str | None, Any]]:
    """(event name, decoded data) of each event in an SSE body; ``[DONE]`` kept as a string."""
    events: list[tuple[str | None, Any]] = []
    for raw in text.replace("\r\n", "\n").split("\n\n"):
        if not raw.strip():
            continue
        name = None
        data = ""
        for line in raw.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data += line.removeprefix("data: ")
        events.append((name, data if data == "[DONE]" else msgspec.json.decode(data)))
    return events


async def test_anthropic_sdk_streams_a_tool_use_turn_then_a_final_text_turn(
    server: ScriptedModelServer,
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=server.url, api_key="secret-key", max_retries=0
    ) as client:
        messages: list[Any] = [{"role": "user", "content": "please write hello"}]
        async with client.messages.stream(
            model="claude-scripted", max_tokens=1024, messages=messages, tools=[WRITE_TOOL]
        ) as stream:
            kinds = [event.type async for event in stream]
            first = await stream.get_final_message()

        assert kinds[0] == "message_start"
        assert kinds[-1] == "message_stop"
        assert [b.type for b in first.content] == ["thinking", "text", "tool_use"]
        thinking, text, tool_use = first.content
        assert thinking.type == "thinking"
        assert thinking.thinking == "The user wants a file."
        assert thinking.signature
        assert text.type == "text"
        assert text.text == "Writing it now."
        assert tool_use.type == "tool_use"
        assert tool_use.name == "Write"
        assert tool_use.input == {"file_path": "hello.txt", "content": "hi\n"}
        assert tool_use.id.startswith("toolu_")
        assert first.stop_reason == "tool_use"
        assert first.usage.input_tokens > 0
        assert first.usage.output_tokens > 1

        messages += [
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use.id, "content": "File created"}
                ],
            },
        ]
        async with client.messages.stream(
            model="claude-scripted", max_tokens=1024, messages=messages, tools=[WRITE_TOOL]
        ) as stream:
            second = await stream.get_final_message()

    assert [b.type for b in second.content] == ["text"]
    assert second.content[0].type == "text"
    assert second.content[0].text == "Done: wrote hello.txt"
    assert second.stop_reason == "end_turn"
    assert (second.usage.input_tokens, second.usage.output_tokens) == (100, 40)

    recorded = server.requests
    assert [r.rule for r in recorded] == [2, 3]
    assert all(r.api == "anthropic" and r.api_key_present for r in recorded)
    assert "x-api-key" not in recorded[0].headers
    assert "secret-key" not in msgspec.json.encode(recorded).decode()


async def test_anthropic_sdk_non_streaming_and_count_tokens(server: ScriptedModelServer) -> None:
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client:
        message = await client.messages.create(
            model="claude-scripted", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        counted = await client.messages.count_tokens(
            model="claude-scripted", messages=[{"role": "user", "content": "hi"}]
        )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the scripted model"
    assert message.stop_reason == "end_turn"
    assert message.id.startswith("msg_")
    assert (message._request_id or "").startswith("req_")  # from the request-id header
    assert counted.input_tokens > 0


async def test_openai_chat_streams_a_tool_call_then_text_with_a_usage_chunk(
    server: ScriptedModelServer,
) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="k", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "write hello"}],
            tools=[{"type": "function", "function": {"name": "Write", "parameters": {}}}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        finish = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert content == "Writing it now."  # thinking has no place in Chat Completions
        assert calls[0].id is not None
        assert calls[0].id.startswith("call_")
        assert calls[0].function is not None
        assert calls[0].function.name == "Write"
        arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
        assert msgspec.json.decode(arguments) == {"file_path": "hello.txt", "content": "hi\n"}
        assert finish[-1] == "tool_calls"
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.prompt_tokens > 0
        assert chunks[-1].usage.total_tokens == (
            chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
        )

        final = await client.chat.completions.create(
            model="gpt-fake",
            messages=[
                {"role": "user", "content": "write hello"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": calls[0].id,
                            "type": "function",
                            "function": {"name": "Write", "arguments": arguments},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": calls[0].id, "content": "created hello.txt"},
            ],
        )
    assert final.choices[0].message.content == "Done: wrote hello.txt"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (100, 40)


async def test_openai_responses_stream_gives_codex_its_function_call_then_text(
    server: ScriptedModelServer,
) -> None:
    tools: Any = [{"type": "function", "name": "exec_command", "parameters": {}}]
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="k", max_retries=0
    ) as client:
        async with client.responses.stream(
            model="gpt-fake", input="write hello", tools=tools
        ) as stream:
            kinds = [event.type async for event in stream]
            first = await stream.get_final_response()
        call = first.output[0]
        assert call.type == "function_call"
        assert call.name == "exec_command"
        assert msgspec.json.decode(call.arguments) == {"cmd": "printf 'hi\\n' > hello.txt"}
        assert kinds[:3] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
        ]
        assert "response.function_call_arguments.delta" in kinds
        assert kinds[-1] == "response.completed"
        assert first.usage is not None
        assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens

        follow_up: Any = [
            {"type": "message", "role": "user", "content": "write hello"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "created"},
        ]
        stream2 = await client.responses.create(
            model="gpt-fake", input=follow_up, tools=tools, stream=True
        )
        events = [event async for event in stream2]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Done: wrote hello.txt"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == "Done: wrote hello.txt"
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == 40


async def test_gemini_sse_stream_and_generate_content(server: ScriptedModelServer) -> None:
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": "write hello"}]}],
        "tools": [{"functionDeclarations": [{"name": "write_file"}]}],
    }
    model_url = f"{server.url}/v1beta/models/gemini-2.5-flash"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{model_url}:streamGenerateContent", params={"alt": "sse", "key": "gkey"}, json=body
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.text)
        assert all(name is None for name, _ in events)  # Gemini sends data lines only
        records = [data for _, data in events]
        part = records[-1]["candidates"][0]["content"]["parts"][0]
        assert part == {
            "functionCall": {
                "name": "write_file",
                "args": {"file_path": "hello.txt", "content": "hi\n"},
            }
        }
        assert records[-1]["candidates"][0]["finishReason"] == "STOP"
        usage = records[-1]["usageMetadata"]
        assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]

        body["contents"] += [
            {"role": "model", "parts": [part]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "write_file", "response": {"output": "created"}}}
                ],
            },
        ]
        whole = await client.post(
            f"{model_url}:generateContent", headers={"x-goog-api-key": "gkey"}, json=body
        )
        array = await client.post(f"{model_url}:streamGenerateContent", json=body)
    assert whole.status_code == 200
    candidate = whole.json()["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": "Done: wrote hello.txt"}], "role": "model"}
    assert whole.json()["usageMetadata"]["candidatesTokenCount"] == 40
    # Without alt=sse the stream is one JSON array.
    assert array.json()[-1]["candidates"][0]["finishReason"] == "STOP"

    recorded = server.requests
    assert recorded[0].query == {"alt": "sse"}
    assert [r.api_key_present for r in recorded] == [True, True, False]
    assert "gkey" not in msgspec.json.encode(recorded).decode()


async def _drain(client: anthropic.AsyncAnthropic, prompt: str) -> list[str]:
    async with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        return [event.type async for event in stream]


async def test_error_rules_give_each_provider_its_typed_error(server: ScriptedModelServer) -> None:
    user: Any = [{"role": "user", "content": "overload please"}]
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client:
        with pytest.raises(anthropic.OverloadedError) as overloaded:
            await client.messages.create(model="m", max_tokens=10, messages=user)
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            await _drain(client, "break midway")  # the error arrives as an event mid-stream
    assert overloaded.value.status_code == 529
    assert overloaded.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": overloaded.value.request_id,
    }
    assert overloaded.value.response.headers["x-should-retry"] == "false"

    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0) as oai:
        with pytest.raises(openai.RateLimitError) as limited:
            await oai.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "rate limit"}]
            )
        with pytest.raises(openai.RateLimitError):
            await oai.responses.create(model="m", input="rate limit")
        with pytest.raises(openai.NotFoundError):
            await oai.embeddings.create(model="m", input="x")
    assert limited.value.code == "rate_limit_exceeded"

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        gemini = await client.post(
            "/v1beta/models/g:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "overload"}]}]},
        )
        missing = await client.get("/v1beta/nothing")
    assert gemini.status_code == 529
    assert gemini.json() == {
        "error": {"code": 529, "message": "Overloaded", "status": "UNAVAILABLE"}
    }
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"


async def test_a_slow_rule_streams_in_chunks_with_delays(server: ScriptedModelServer) -> None:
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client:
        started = time.monotonic()
        async with client.messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "slow please"}]
        ) as stream:
            pieces = [text async for text in stream.text_stream]
        elapsed = time.monotonic() - started
    assert pieces == ["01234", "56789"] * 4
    assert elapsed >= 8 * 0.040 * 0.9  # eight chunks, 40 ms before each (loosely)


async def test_twenty_concurrent_requests_each_get_their_own_answer() -> None:
    # Half match on a substring, half on a regex: "task 1." must not answer "task 10.".
    rules = [
        {
            "match": {"last_user_text": f"task {n}."}
            if n % 2
            else {"last_user_regex": rf"task {n}\.$"},
            "reply": [{"text": f"answer {n}", "chunk_chars": 3, "delay_ms": 10}],
        }
        for n in range(20)
    ]
    async with (
        ScriptedModelServer({"rules": rules}) as server,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as claude,
        openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0) as gpt,
    ):

        async def ask(n: int) -> str:
            prompt = f"do task {n}."
            if n % 2:
                response = await gpt.responses.create(model="m", input=prompt)
                return response.output_text
            async with claude.messages.stream(
                model="m", max_tokens=10, messages=[{"role": "user", "content": prompt}]
            ) as stream:
                return "".join([t async for t in stream.text_stream])

        answers = await asyncio.gather(*(ask(n) for n in range(20)))
        assert answers == [f"answer {n}" for n in range(20)]
        assert len(server.requests) == 20
        assert sorted(r.rule for r in server.requests if r.rule is not None) == list(range(20))


async def test_tool_offered_picks_each_clients_tool_name(server: ScriptedModelServer) -> None:
    """Each CLI names its tools its own way; rules pick by what the request offers."""
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client:
        gemini_style = await client.messages.create(
            model="m",
            max_tokens=10,
            messages=[{"role": "user", "content": "write hello"}],
            tools=[{"name": "write_file", "input_schema": {"type": "object"}}],
        )
    assert [b.name for b in gemini_style.content if b.type == "tool_use"] == ["write_file"]


def test_sync_context_manager_and_out_of_process_control() -> None:
    with ScriptedModelServer() as server, httpx.Client(base_url=server.url, timeout=10) as client:
        ask = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "ping"}]}
        default = client.post("/v1/messages", json=ask, headers={"x-api-key": "k"})
        assert default.json()["content"] == [
            {"type": "text", "text": "Hello from the scripted model"}
        ]

        script = "rules:\n  - match: {any: true}\n    reply: [{text: pong}]\n"
        assert client.post("/_orrery/script", content=script).json() == {"rules": 1}
        assert client.get("/_orrery/script").json()["rules"][0]["reply"] == [{"text": "pong"}]
        assert client.post("/v1/messages", json=ask).json()["content"][0]["text"] == "pong"
        bad = client.post("/_orrery/script", content="rules: [{match: {}, reply: []}]")
        assert bad.status_code == 400

        server.set_script({"rules": [{"match": {"any": True}, "reply": [{"text": "again"}]}]})
        assert client.post("/v1/messages", json=ask).json()["content"][0]["text"] == "again"

        models = client.get("/v1/models").json()
        assert models["object"] == "list"
        assert "gpt-fake" in [m["id"] for m in models["data"]]
        claude = client.get("/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
        assert claude["data"][0]["type"] == "model"
        assert client.get("/v1beta/models").json()["models"][0]["name"].startswith("models/")

        recorded = client.get("/_orrery/requests").json()
        assert [r["body"]["messages"][0]["content"] for r in recorded] == ["ping"] * 3
        assert [r["api_key_present"] for r in recorded] == [True, False, False]
        assert client.delete("/_orrery/requests").status_code == 204
        assert client.get("/_orrery/requests").json() == []


def test_invalid_scripts_are_refused_with_a_reason() -> None:
    with pytest.raises(ScriptError, match="exactly one of"):
        load_script(
            {"rules": [{"match": {"any": True}, "reply": [{"text": "a", "thinking": "b"}]}]}
        )
    with pytest.raises(ScriptError, match="needs a condition"):
        load_script({"rules": [{"match": {}, "reply": [{"text": "a"}]}]})
    with pytest.raises(ScriptError, match="last item"):
        load_script(
            {
                "rules": [
                    {
                        "match": {"any": True},
                        "reply": [{"error": {"status": 500, "message": "x"}}, {"text": "a"}],
                    }
                ]
            }
        )
    with pytest.raises(ScriptError, match="unknown field"):
        load_script("rules: [{match: {any: true}, reply: [{txt: hi}]}]")


def test_console_script_serves_a_script_file(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("rules:\n  - match: {any: true}\n    reply: [{text: from the cli}]\n")
    binary = Path(sys.executable).parent / "orrery-model-server"
    with subprocess.Popen(
        [str(binary), "--script", str(script), "--port", "0"], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            url = line.rsplit(" ", 1)[-1].strip()
            assert url.startswith("http://127.0.0.1:")
            response = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                timeout=10,
            )
            assert response.json()["choices"][0]["message"]["content"] == "from the cli"
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0


def _sample(name: str) -> dict[str, Any]:
    path = SAMPLES / name
    sample: dict[str, Any] = msgspec.json.decode(path.read_bytes())
    return sample


DROPPED_HEADERS = {"host", "content-length", "connection", "accept-encoding", "authorization"}


async def _replay(
    server: ScriptedModelServer, sample: dict[str, Any]
) -> list[tuple[str | None, Any]]:
    headers = {k: v for k, v in sample["headers"].items() if k.lower() not in DROPPED_HEADERS}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post(
            sample["path"], content=msgspec.json.encode(sample["body"]), headers=headers
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return sse_events(response.text)


@pytest.fixture
def example_script(repo_root: Path) -> Path:
    return repo_root / "libs" / "modelserver" / "examples" / "hello_world.yaml"


async def test_replayed_claude_code_request_gets_a_well_formed_stream(example_script: Path) -> None:
    sample = _sample("claude_request_body_trimmed.json")
    async with ScriptedModelServer(example_script) as server:
        events = await _replay(server, sample)
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    start = events[names.index("content_block_start")][1]
    assert start["content_block"]["name"] == "Bash"
    assert start["content_block"]["id"].startswith("toolu_")
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert msgspec.json.decode(partial) == {
        "command": "echo 'hello world' > hello.txt",
        "description": "Create hello.txt",
    }
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[0][1]["message"]["model"] == "claude-sonnet-4-5"


async def test_replayed_codex_request_gets_a_well_formed_stream(example_script: Path) -> None:
    sample = _sample("codex_request_body_trimmed.json")
    async with ScriptedModelServer(example_script) as server:
        events = await _replay(server, sample)
        assert server.requests[0].rule == 2
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] == "response.completed"
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    done = [data["item"] for name, data in events if name == "response.output_item.done"]
    assert done[0]["type"] == "function_call"
    assert done[0]["name"] == "exec_command"
    assert msgspec.json.decode(done[0]["arguments"]) == {"cmd": "echo 'hello world' > hello.txt"}
    assert events[-1][1]["response"]["usage"]["input_tokens"] > 0
