"""Secrets come only from the environment; these helpers keep them out of messages, tables and logs."""

from __future__ import annotations

from collections.abc import Mapping

SECRET_VARIABLES = ("GITHUB_TOKEN", "GITHUB_TOKENS", "OPENAI_API_KEY")
MIN_SECRET_LENGTH = 8  # shorter values would blank ordinary words out of messages


def env_secrets(environ: Mapping[str, str]) -> list[str]:
    """Every secret in ``environ`` (comma-separated token lists split), longest first."""
    found = {s.strip() for name in SECRET_VARIABLES for s in (environ.get(name) or "").split(",")}
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
