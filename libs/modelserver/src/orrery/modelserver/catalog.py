"""The model-list endpoints, one shape per provider."""

from __future__ import annotations

from typing import Any

CREATED_AT = "2025-01-01T00:00:00Z"


def openai_models(models: list[str]) -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "orrery"} for m in models]
    return {"object": "list", "data": data}


def openai_model(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "orrery"}


def anthropic_model(model: str) -> dict[str, Any]:
    return {"type": "model", "id": model, "display_name": model, "created_at": CREATED_AT}


def anthropic_models(models: list[str]) -> dict[str, Any]:
    return {
        "data": [anthropic_model(m) for m in models],
        "has_more": False,
        "first_id": models[0] if models else None,
        "last_id": models[-1] if models else None,
    }


def gemini_model(model: str) -> dict[str, Any]:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    }


def gemini_models(models: list[str]) -> dict[str, Any]:
    return {"models": [gemini_model(m) for m in models]}
