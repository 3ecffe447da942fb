"""CPU the agent's process spends per streamed chunk reading Anthropic Messages streams, by the
way it reads them: the ``anthropic`` SDK's message stream, its raw events, or the product's own
reader, each on the SDK's default httpx transport and on its aiohttp transport, each on asyncio's
own event loop and on uvloop.

N streams (default 50) of C chunks (default 200) of 10 characters, one chunk every 20 ms, all at
once, from the project's scripted model server. The server runs in a child process of this bench,
so its work neither shares the GIL with the client nor counts in its CPU. A sample is the
``time.process_time()`` of the bench's process (every thread of it) while all N streams are read,
divided by the text deltas received: per-stream costs (request, connection, message start and
stop) are spread over the chunks, as they are in the agent. Before each measurement one short
stream is read, not timed (first connection, first parse), and ``gc.collect()`` runs.

The ways of reading:

* **SDK message stream**: ``client.messages.stream()``, iterated, then ``get_final_message()``;
  what the built-in agent used before (pydantic models and a message snapshot per event).
* **SDK raw events**: ``client.messages.create(stream=True)``: pydantic events, no snapshot.
* **product**: ``client.messages.with_streaming_response.create(stream=True)``, the SSE events read
  with ``httpx_sse.EventSource`` and each decoded and folded by the product's own code
  (``orrery.sessions.agents.anthropic_stream.decode`` and ``MessageBuilder``), exactly as
  ``BuiltinAgent``'s Anthropic loop (``agents/builtin.py``, ``_one_call``) reads a turn, minus
  what it does with each delta. On the aiohttp transport (``anthropic.DefaultAioHttpClient()``)
  and on uvloop, this is the path as shipped: ``ratio`` is each number over that one, measured in
  the same run. The loops are run with the product's ``orrery.runtime.settings.run``.

Every stream must deliver all its chunks, in order, and the text they make: a stream that fails,
falls short or differs is an error (exit code 1).

Run: ``.venv/bin/python bench/stream_parse.py [--quick] [--streams 50] [--chunks 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, cast

import anthropic
import httpx_sse
from orrery.events.sessions import TextBlock
from orrery.modelserver import ScriptedModelServer
from orrery.runtime.settings import EventLoop, run
from orrery.sessions.agents import anthropic_stream
from orrery.sessions.agents.anthropic_stream import MessageBuilder
from orrery.sessions.agents.builtin import DEFAULT_MODEL as MODEL

if TYPE_CHECKING:
    import httpx

CHUNK_CHARS = 10  # len("SSSS:CCCC;")
DELAY_MS = 20  # before each chunk, as in bench/sessions.py
WARM_CHUNKS = 20
MAX_TOKENS = 8192
LOOPS: tuple[EventLoop, ...] = ("asyncio", "uvloop")


def chunk_text(stream: int, chunk: int) -> str:
    return f"{stream:04d}:{chunk:04d};"


def stream_text(stream: int, chunks: int) -> str:
    return "".join(chunk_text(stream, c) for c in range(chunks))


def prompt_tag(stream: int) -> str:
    return f"[bench {stream:04d}]"  # bracketed: no stream's tag is a substring of another's


def script(streams: int, chunks: int) -> dict[str, Any]:
    """One rule per stream: its own text, 10 characters at a time, 20 ms apart."""
    rules: list[dict[str, Any]] = [
        {
            "match": {"last_user_text": prompt_tag(s)},
            "reply": [
                {"text": stream_text(s, chunks), "chunk_chars": CHUNK_CHARS, "delay_ms": DELAY_MS}
            ],
        }
        for s in range(streams)
    ]
    rules.append(
        {
            "match": {"any": True},
            "reply": [{"text": "warm " * 2 * WARM_CHUNKS, "chunk_chars": CHUNK_CHARS}],
        }
    )
    return {"rules": rules}


# --- the child process: the model server ------------------------------------------------------


def model_process(conn: Connection, streams: int, chunks: int) -> None:
    with ScriptedModelServer(script(streams, chunks)) as server:
        conn.send(server.url)
        conn.recv()  # stop


class ModelChild:
    def __init__(self, streams: int, chunks: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=model_process, args=(child, streams, chunks), daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            raise RuntimeError("the model server process did not start")
        self.url: str = self.conn.recv()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.proc.join(15)
        if self.proc.is_alive():
            self.proc.kill()


# --- the ways of reading a stream -------------------------------------------------------------
# Each reads one stream to its end and returns its text deltas, in order.

Reader = Callable[[anthropic.AsyncAnthropic, str], Awaitable[list[str]]]


async def sdk_message_stream(client: anthropic.AsyncAnthropic, prompt: str) -> list[str]:
    deltas: list[str] = []
    async with client.messages.stream(
        model=MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                deltas.append(event.delta.text)
        message = await stream.get_final_message()
    text = "".join(b.text for b in message.content if b.type == "text")
    if text != "".join(deltas):
        raise RuntimeError("the final message's text is not its deltas'")
    return deltas


async def sdk_raw_events(client: anthropic.AsyncAnthropic, prompt: str) -> list[str]:
    deltas: list[str] = []
    stream = await client.messages.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
    )
    async with stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                deltas.append(event.delta.text)
    return deltas


async def product_reader(client: anthropic.AsyncAnthropic, prompt: str) -> list[str]:
    """As ``_AnthropicLoop._one_call`` in agents/builtin.py reads the stream (it then publishes
    each delta and records the message: not reading, not counted here)."""
    deltas: list[str] = []
    built = MessageBuilder()
    async with client.messages.with_streaming_response.create(
        model=MODEL,
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
    ) as response:
        source = httpx_sse.EventSource(cast("httpx.Response", response.http_response))
        async for sse in source.aiter_sse():
            if not sse.data or sse.event == "ping":
                continue
            delta = built.add(anthropic_stream.decode(sse.data))
            if delta is not None and delta.type == "text_delta":
                deltas.append(delta.text)
    if not built.complete:
        raise RuntimeError("the stream ended before message_stop")
    text = "".join(b.text for b in built.blocks() if isinstance(b, TextBlock))
    if text != "".join(deltas):
        raise RuntimeError("the built message's text is not its deltas'")
    return deltas


@dataclass(frozen=True)
class Way:
    label: str
    key: str  # for the RESULT line
    reader: Reader
    aiohttp: bool


WAYS = [
    Way("SDK message stream, `messages.stream()`", "sdk_stream", sdk_message_stream, False),
    Way("  the same, aiohttp transport", "sdk_stream_aiohttp", sdk_message_stream, True),
    Way("SDK raw events, `messages.create(stream=True)`", "sdk_raw", sdk_raw_events, False),
    Way("  the same, aiohttp transport", "sdk_raw_aiohttp", sdk_raw_events, True),
    Way("product: streaming response, httpx-sse, msgspec", "product", product_reader, False),
    Way("  the same, aiohttp transport (as shipped)", "shipped", product_reader, True),
]
SHIPPED: tuple[Way, EventLoop] = (WAYS[-1], "uvloop")


# --- one measurement ----------------------------------------------------------------------------


@dataclass
class Sample:
    way: Way
    loop: EventLoop
    cpu_s: float = 0.0
    wall_s: float = 0.0
    chunks: int = 0
    expected: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def us_per_chunk(self) -> float:
        return self.cpu_s / self.chunks * 1e6 if self.chunks else float("nan")


async def measure(url: str, way: Way, loop: EventLoop, streams: int, chunks: int) -> Sample:
    sample = Sample(way, loop, expected=streams * chunks)
    client = anthropic.AsyncAnthropic(
        api_key="bench-key",
        base_url=url,
        max_retries=0,  # a failed stream is an error here, not a retry
        http_client=anthropic.DefaultAioHttpClient() if way.aiohttp else None,
    )
    try:
        warm = await way.reader(client, "warm up")
        if len(warm) != WARM_CHUNKS:
            sample.errors.append(f"warm-up stream: {len(warm)} chunks, not {WARM_CHUNKS}")
        gc.collect()
        wall, cpu = time.monotonic(), time.process_time()
        results = await asyncio.gather(
            *(way.reader(client, f"{prompt_tag(s)} go") for s in range(streams)),
            return_exceptions=True,
        )
        sample.cpu_s = time.process_time() - cpu
        sample.wall_s = time.monotonic() - wall
    finally:
        await client.close()
    for s, result in enumerate(results):
        if isinstance(result, BaseException):
            sample.errors.append(f"stream {s}: {type(result).__name__}: {result}")
            continue
        sample.chunks += len(result)
        if result != [chunk_text(s, c) for c in range(chunks)]:
            sample.errors.append(
                f"stream {s}: {len(result)} chunks of {chunks}"
                + ("" if len(result) != chunks else ", not its text")
            )
    return sample


def bench(streams: int, chunks: int) -> list[Sample]:
    model = ModelChild(streams, chunks)
    samples: list[Sample] = []
    try:
        for way in WAYS:
            for loop in LOOPS:
                sample = run(measure(model.url, way, loop, streams, chunks), loop)
                samples.append(sample)
                print(
                    f"{way.label:<50} {loop:<8} {sample.us_per_chunk:7.1f} µs/chunk"
                    f"  wall {sample.wall_s:5.2f} s  ({sample.chunks}/{sample.expected} chunks)",
                    flush=True,
                )
    finally:
        model.close()
    return samples


# --- report -------------------------------------------------------------------------------------


def report(samples: list[Sample], streams: int, chunks: int) -> bool:
    """Print the table and the RESULT line; returns whether every stream was complete."""
    by = {(s.way.key, s.loop): s for s in samples}
    shipped = by[SHIPPED[0].key, SHIPPED[1]].us_per_chunk
    print(
        f"\n{streams} streams of {chunks} chunks of {CHUNK_CHARS} characters at once, one chunk"
        f" every {DELAY_MS} ms; CPU of this process (time.process_time) per chunk, in µs;"
        f" ratio: over the shipped path on uvloop ({shipped:.1f} µs)"
    )
    print(f"{'how the stream is read':<50}{'asyncio':>9}{'uvloop':>9}   ratio (asyncio / uvloop)")
    for way in WAYS:
        a, u = (by[way.key, loop].us_per_chunk for loop in LOOPS)
        print(f"{way.label:<50}{a:>9.1f}{u:>9.1f}   {a / shipped:5.2f} / {u / shipped:.2f}")
    clean = True
    for s in samples:
        if s.errors:
            clean = False
            print(f"error: {s.way.label.strip()} on {s.loop}: {s.chunks}/{s.expected} chunks")
            for e in s.errors[:10]:
                print(f"error:   {e}")
    print(
        "RESULT "
        + " ".join(f"{s.way.key}_{s.loop}_us={s.us_per_chunk:.1f}" for s in samples)
        + f" lost={sum(s.expected - s.chunks for s in samples)}"
    )
    return clean


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="10 streams of 50 chunks")
    parser.add_argument("--streams", type=int, default=50, help="streams read at once")
    parser.add_argument("--chunks", type=int, default=200, help="chunks per stream")
    args = parser.parse_args()
    streams, chunks = (10, 50) if args.quick else (args.streams, args.chunks)
    if streams < 1 or chunks < 1:
        parser.error("--streams and --chunks must be positive")
    if streams > 9999:
        parser.error("--streams: at most 9999 (a chunk's text holds a 4-digit stream number)")
    if chunks > 9999:
        parser.error("--chunks: at most 9999 (a chunk's text holds a 4-digit chunk number)")
    print(
        f"{streams} streams of {chunks} chunks at once; {len(WAYS)} ways x {len(LOOPS)} event"
        " loops; the model server in a child process"
    )
    samples = bench(streams, chunks)
    return 0 if report(samples, streams, chunks) else 1


if __name__ == "__main__":
    sys.exit(main())
