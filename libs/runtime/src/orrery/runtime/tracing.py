"""OpenTelemetry context in message headers, so one request is one trace across services.

The W3C ``traceparent``/``tracestate`` pair rides in every command's and event's headers
(``EventMeta.trace``). A handler continues the trace it received; what it appends carries the
handler's span as parent. With no SDK configured the API is a no-op that still forwards the
incoming context unchanged, so traces survive hops through services that export nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from orrery.events import TraceContext

_tracer = trace.get_tracer("orrery")


def current() -> TraceContext:
    """The active span's context, ready to put in a message's metadata."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return TraceContext(
        traceparent=carrier.get("traceparent"), tracestate=carrier.get("tracestate")
    )


@contextlib.contextmanager
def continued(name: str, received: TraceContext, **attributes: str) -> Iterator[None]:
    """Run a block inside a span that continues the trace of a received message."""
    carrier = {
        k: v
        for k, v in (("traceparent", received.traceparent), ("tracestate", received.tracestate))
        if v
    }
    token = otel_context.attach(propagate.extract(carrier))
    try:
        with _tracer.start_as_current_span(name, attributes=attributes):
            yield
    finally:
        otel_context.detach(token)
