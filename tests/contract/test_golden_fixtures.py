"""Golden JSON per event and command version, never edited once committed: every stored
version must keep decoding into the current classes."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from orrery.events import Command, Event, codec, default_registry, wire_tag
from orrery.events.registry import Registry

FIXTURES = Path(__file__).parent / "fixtures"
NAME = re.compile(r"^(?P<tag>[a-z]+\.[A-Za-z]+)\.v(?P<version>\d+)\.json$")


def fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def test_every_registered_version_has_a_golden_fixture() -> None:
    registry = default_registry()
    have = {(m["tag"], int(m["version"])) for p in fixtures() if (m := NAME.match(p.name))}
    want = {(tag, v) for tag, cls in registry.events().items() for v in range(1, cls.VERSION + 1)}
    want |= {(tag, cls.VERSION) for tag, cls in registry.commands().items()}
    assert want - have == set(), "add a golden fixture for each new event or command version"


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.name)
def test_fixture_decodes_into_the_current_class(path: Path) -> None:
    m = NAME.match(path.name)
    assert m, f"{path.name}: name fixtures <tag>.v<version>.json"
    registry = default_registry()
    tag, version, body = m["tag"], int(m["version"]), path.read_bytes()
    decoded: Event | Command
    if tag in registry.commands():
        decoded = codec.decode_command(registry, {codec.H_TYPE: tag}, body)
    else:
        decoded = codec.decode_body(registry, tag, version, body)
    assert wire_tag(type(decoded)) == tag
    # Nothing the fixture says is dropped on the way in.
    raw = msgspec.json.decode(body)
    assert {k: v for k, v in msgspec.to_builtins(decoded).items() if k in raw} == raw


def test_tags_are_unique_and_explicit() -> None:
    registry = default_registry()
    tags = [*registry.events(), *registry.commands()]
    assert len(tags) == len(set(tags))
    for tag, cls in [*registry.events().items(), *registry.commands().items()]:
        assert tag == wire_tag(cls)
        assert tag.split(".")[1] == cls.__name__, "the tag names the class it belongs to"


def test_events_never_forbid_unknown_fields_or_use_arrays() -> None:
    """Old readers must keep decoding what newer writers add (msgspec evolution rules)."""
    for cls in default_registry().events().values():
        config = cls.__struct_config__
        assert not config.forbid_unknown_fields and not config.array_like, cls


def test_registry_refuses_duplicate_tags() -> None:
    from orrery.events.canvas import BoardCreated
    from orrery.events.errors import RegistryError

    registry = Registry()
    registry.event(BoardCreated)
    with pytest.raises(RegistryError, match="used twice"):
        registry.event(BoardCreated)
