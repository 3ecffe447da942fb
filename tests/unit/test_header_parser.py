"""Orrery's NATS client parses headers exactly as nats-py does, only faster."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from orrery.runtime.bus import OrreryClient

SAMPLES = [
    b"Orrery-Type: canvas.BoardCreated\r\nNats-Msg-Id: a:0\r\n\r\n",
    b"A:1\r\nB:\t two \r\n:empty-name\r\nno colon\r\n\r\n",
    b"Bad Name: x\r\n \xc2\xa0Lead: y\r\nUtf: caf\xc3\xa9 \xc2\xa0\r\nBroken: \xff\xfe\r\n\r\n",
    b"Dup: 1\r\nDup: 2\r\n  Spaced  :  v  \r\n\r\n",
    b"",
]


def test_known_samples_parse_identically() -> None:
    for raw in SAMPLES:
        assert OrreryClient._parse_header_lines(raw) == Client._parse_header_lines(raw), raw


@given(st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=16)), max_size=6))
def test_random_blocks_parse_identically(pairs: list[tuple[bytes, bytes]]) -> None:
    raw = b"".join(
        k.replace(b"\r", b"").replace(b"\n", b"") + b":" + v.replace(b"\r\n", b"") + b"\r\n"
        for k, v in pairs
    )
    assert OrreryClient._parse_header_lines(raw) == Client._parse_header_lines(raw)
