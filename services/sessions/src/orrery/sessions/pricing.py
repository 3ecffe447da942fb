"""Token prices per model (USD per million tokens), overridable with a JSON file named by
``ORRERY_PRICING_FILE``: ``{"model": {"input": 3, "output": 15, "cache_read": 0.3,
"cache_write": 3.75}}``. A model missing from the table costs 0 (its raw usage is still kept)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orrery.events.sessions import Usage
from orrery.runtime.errors import ConfigurationError


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0


DEFAULT: dict[str, Price] = {
    "claude-opus-4-5": Price(5, 25, 0.5, 6.25),
    "claude-opus-4-1": Price(15, 75, 1.5, 18.75),
    "claude-sonnet-4-6": Price(3, 15, 0.3, 3.75),
    "claude-sonnet-4-5": Price(3, 15, 0.3, 3.75),
    "claude-sonnet-4-0": Price(3, 15, 0.3, 3.75),
    "claude-haiku-4-5": Price(1, 5, 0.1, 1.25),
    "gpt-5": Price(1.25, 10, 0.125),
    "gpt-5-codex": Price(1.25, 10, 0.125),
    "gpt-5-mini": Price(0.25, 2, 0.025),
    "gpt-4o": Price(2.5, 10, 1.25),
    "gpt-4o-mini": Price(0.15, 0.6, 0.075),
    "gemini-2.5-pro": Price(1.25, 10, 0.31),
    "gemini-2.5-flash": Price(0.3, 2.5, 0.075),
    "gemini-2.5-flash-lite": Price(0.1, 0.4, 0.025),
}


def load(env: Mapping[str, str] | None = None) -> dict[str, Price]:
    table = dict(DEFAULT)
    path = (os.environ if env is None else env).get("ORRERY_PRICING_FILE")
    if not path:
        return table
    try:
        raw = json.loads(Path(path).read_text())
        for model, price in raw.items():
            table[str(model)] = Price(**{k: float(v) for k, v in price.items()})
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"ORRERY_PRICING_FILE {path}: {exc}") from None
    return table


def cost(table: Mapping[str, Price], model: str, usage: Usage) -> float:
    price = table.get(model) or table.get(model.rsplit("/", 1)[-1])
    if price is None:
        # Dated ids (claude-sonnet-4-5-20250929) price as their family.
        price = next((p for name, p in table.items() if model.startswith(name)), None)
    if price is None:
        return 0.0
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    )
    return round(total / 1_000_000, 6)
