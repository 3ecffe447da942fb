"""The Litestar application: thin controllers over the wire formats, the script and the recorder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, delete, get, post
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.params import FromPath
from litestar.response import Stream
from litestar.types import ControllerRouterHandler
from orrery.modelserver import (
    anthropic_messages,
    catalog,
    gemini,
    openai_chat,
    openai_responses,
)
from orrery.modelserver.conversation import Conversation
from orrery.modelserver.recorder import Recorder
from orrery.modelserver.reply import Failure, Reply, digest, estimate_tokens, plan
from orrery.modelserver.script import Api, Script, ScriptError, encode_script, load_script
from orrery.modelserver.sse import SSE_HEADERS, Frame, play
from orrery.modelserver.wire import ErrorReply, WireFormat

# Agent CLIs resend the whole conversation every turn; long sessions send megabytes.
MAX_BODY_BYTES = 64 * 1024 * 1024
AnyRequest = Request[Any, Any, Any]


@dataclass
class ServerState:
    script: Script
    recorder: Recorder = field(default_factory=Recorder)
    clock: Callable[[], float] = time.time


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response(err: ErrorReply) -> Response[bytes]:
    return json_response(err.body, err.status, err.headers)


def _wire_for(request: AnyRequest) -> WireFormat:
    """Which provider's error shape a request expects, from its path and headers."""
    headers = request.headers
    if request.url.path.startswith("/v1beta") or "x-goog-api-key" in headers:
        return gemini.WIRE
    if "anthropic-version" in headers or "x-api-key" in headers:
        return anthropic_messages.WIRE
    return openai_chat.WIRE


def _record(
    state: ServerState, request: AnyRequest, body: bytes, api: Api | None, rule: int | None
) -> None:
    state.recorder.record(
        method=request.method,
        path=request.url.path,
        query=request.query_params.multi_items(),
        headers=request.headers,
        body=body,
        api=api,
        rule=rule,
    )


def _no_rule(conv: Conversation) -> Failure:
    return Failure(
        400,
        "orrery.modelserver: no script rule matches this request "
        f"(api={conv.api}, last_user_text={conv.last_user_text[-200:]!r}, "
        f"after_tool_result={conv.after_tool_result})",
        retry=False,
    )


async def _model_call(
    state: ServerState,
    request: AnyRequest,
    wire: WireFormat,
    adjust: Callable[[Conversation], Conversation] = lambda conv: conv,
    frames: Callable[[Reply, Conversation], list[Frame]] | None = None,
) -> Response[Any]:
    body = await request.body()
    key = digest(body)
    try:
        conv = adjust(wire.parse(body))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        _record(state, request, body, wire.api, None)
        return error_response(wire.error(Failure(400, f"invalid request body: {exc}"), key))
    reply = plan(state.script, conv, body, int(state.clock()))
    _record(state, request, body, wire.api, reply.rule_index if reply else None)
    if reply is None:
        return error_response(wire.error(_no_rule(conv), key))
    # A failure before any output is the HTTP answer; after output, streams carry it inline.
    if reply.failure is not None and (not reply.blocks or not conv.stream):
        return error_response(wire.error(reply.failure, key))
    if not conv.stream:
        return json_response(wire.complete(reply, conv), headers=wire.request_id(key))
    planned = (frames or wire.stream)(reply, conv)
    media_type = "text/event-stream" if frames is None else "application/json"
    headers = {**SSE_HEADERS, **wire.request_id(key)}
    return Stream(play(planned), media_type=media_type, headers=headers, status_code=200)


def _model_handlers(state: ServerState) -> list[ControllerRouterHandler]:
    @post("/v1/messages", status_code=200)
    async def messages(request: AnyRequest) -> Response[Any]:
        return await _model_call(state, request, anthropic_messages.WIRE)

    @post("/v1/messages/count_tokens", status_code=200)
    async def count_tokens(request: AnyRequest) -> Response[Any]:
        body = await request.body()
        _record(state, request, body, "anthropic", None)
        try:
            anthropic_messages.parse(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            failure = Failure(400, f"invalid request body: {exc}")
            return error_response(anthropic_messages.error(failure, digest(body)))
        return json_response({"input_tokens": estimate_tokens(len(body))})

    @post("/v1/chat/completions", status_code=200)
    async def chat_completions(request: AnyRequest) -> Response[Any]:
        return await _model_call(state, request, openai_chat.WIRE)

    @post("/v1/responses", status_code=200)
    async def responses(request: AnyRequest) -> Response[Any]:
        return await _model_call(state, request, openai_responses.WIRE)

    @post(["/v1beta/models/{name:str}", "/v1/models/{name:str}"], status_code=200)
    async def gemini_call(request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        model, _, method = name.partition(":")
        if method == "countTokens":
            body = await request.body()
            _record(state, request, body, "gemini", None)
            return json_response({"totalTokens": estimate_tokens(len(body))})
        if method not in ("generateContent", "streamGenerateContent"):
            _record(state, request, await request.body(), None, None)
            return error_response(gemini.error(Failure(404, f"unknown method {method!r}"), ""))
        streaming = method == "streamGenerateContent"
        sse = request.query_params.get("alt") == "sse"
        return await _model_call(
            state,
            request,
            gemini.WIRE,
            adjust=lambda conv: replace(conv, model=model, stream=streaming),
            frames=None if sse else lambda reply, _conv: gemini.json_array_stream(reply),
        )

    @get(["/v1/models", "/v1beta/models"])
    async def list_models(request: AnyRequest) -> Response[Any]:
        wire = _wire_for(request)
        if wire is gemini.WIRE:
            return json_response(catalog.gemini_models(state.script.models))
        if wire is anthropic_messages.WIRE:
            return json_response(catalog.anthropic_models(state.script.models))
        return json_response(catalog.openai_models(state.script.models))

    @get(["/v1/models/{name:str}", "/v1beta/models/{name:str}"])
    async def get_model(request: AnyRequest, name: FromPath[str]) -> Response[Any]:
        model = name.removeprefix("models/")
        wire = _wire_for(request)
        if wire is gemini.WIRE:
            return json_response(catalog.gemini_model(model))
        if wire is anthropic_messages.WIRE:
            return json_response(catalog.anthropic_model(model))
        return json_response(catalog.openai_model(model))

    return [
        messages,
        count_tokens,
        chat_completions,
        responses,
        gemini_call,
        list_models,
        get_model,
    ]


def _control_handlers(state: ServerState) -> list[ControllerRouterHandler]:
    """Out-of-process control: read what was asked, swap the script."""

    @get("/_orrery/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/_orrery/requests")
    async def requests() -> Response[bytes]:
        return json_response(state.recorder.snapshot())

    @delete("/_orrery/requests", status_code=204)
    async def clear_requests() -> None:
        state.recorder.clear()

    @get("/_orrery/script")
    async def current_script() -> Response[bytes]:
        return Response(encode_script(state.script), media_type="application/json")

    @post("/_orrery/script", status_code=200)
    async def set_script(request: AnyRequest) -> Response[bytes]:
        try:
            state.script = load_script(await request.body())
        except ScriptError as exc:
            return json_response({"error": {"code": exc.code, "message": str(exc)}}, 400)
        return json_response({"rules": len(state.script.rules)})

    return [health, requests, clear_requests, current_script, set_script]


def create_app(state: ServerState) -> Litestar:
    def unknown_route(request: AnyRequest, exc: Exception) -> Response[Any]:
        status = 405 if isinstance(exc, MethodNotAllowedException) else 404
        _record(state, request, b"", None, None)
        failure = Failure(status, f"{request.method} {request.url.path} is not served here")
        return error_response(_wire_for(request).error(failure, digest(request.url.path.encode())))

    return Litestar(
        route_handlers=[*_model_handlers(state), *_control_handlers(state)],
        exception_handlers={
            NotFoundException: unknown_route,
            MethodNotAllowedException: unknown_route,
        },
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=None,
        logging_config=None,
    )
