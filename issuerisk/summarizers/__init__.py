"""Issue summarizers behind one small protocol, chosen by ``summarize.summarizer``.

``extractive`` is deterministic and offline (the embedded default); ``llm`` asks
any OpenAI-compatible chat endpoint. Both answer one issue at a time with an
:class:`Outcome` (a summary, or a failure reason) and name themselves with a
:class:`SummaryIdentity` that goes into every cache key, so changing the model,
the prompt or the rules makes the cache miss.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from issuerisk.conf.settings import SummarizeConfig
from issuerisk.summarizers import extractive

LLM_FIELDS = ("Symptom", "Trigger", "Component", "Environment")
"""The lines of the LLM's ``failure`` prompt, in order."""
_FIELD_LABEL = re.compile(rf"\b(?:{'|'.join((*extractive.FIELD_LABELS, *LLM_FIELDS))}):(?=\s|$)")


def without_field_labels(summary: str) -> str:
    """A summary without the labels of its fields (``Error:``, ``API:``, ``Env:``, ``Code:``, and the LLM's
    ``Symptom:`` ... ``Environment:``): words every summary repeats by its form. Keywords and their coherence are
    counted on what is left; "env" or "api" as a pattern's keyword named the form, not the failure."""
    return " ".join(_FIELD_LABEL.sub(" ", summary).split()) if summary else summary


class SummarizerError(RuntimeError):
    """The summarizer cannot work at all (bad endpoint, model or credentials); retrying per issue would not help."""


class SummaryIdentity(NamedTuple):
    """What produced a summary, as written into ``silver_summaries``."""

    summarizer: str
    model: str
    prompt_version: str


@dataclass(frozen=True)
class Outcome:
    """One issue's result: a summary, or a failure ``reason`` with ``detail``; plus what it cost. A summary with a
    ``reason`` is a fallback: the model's answer was refused (``fallback_<why>``) and the issue got its extractive
    summary."""

    summary: str | None = None
    reason: str | None = None
    detail: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    retries: int = 0

    @property
    def answered(self) -> bool:
        """The request gave what was asked for (here a summary, a fallback one included)."""
        return self.summary is not None


@dataclass
class Tally:
    """What a run of requests cost and produced: answers, failures and fallbacks by reason, calls, tokens."""

    answered: int = 0
    failed: Counter = field(default_factory=Counter)
    fallback: Counter = field(default_factory=Counter)
    calls: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, outcome: Outcome) -> None:
        if outcome.answered:
            self.answered += 1
            if outcome.reason:
                self.fallback[outcome.reason] += 1
        else:
            self.failed[outcome.reason or "unknown"] += 1
        self.calls += outcome.calls
        self.retries += outcome.retries
        self.input_tokens += outcome.input_tokens
        self.output_tokens += outcome.output_tokens


class Endpoint(Protocol):
    """What :func:`answer_all` needs of whoever answers: how many requests may be in flight, and a close."""

    concurrency: int

    async def aclose(self) -> None: ...


async def answer_all(
    endpoint: Endpoint,
    ask: Callable[[str, str], Awaitable[Outcome]],
    issues: Iterable[Any],
    flush: Callable[[list[tuple[Any, Outcome]]], None],
    batch_size: int,
    on_done: Callable[[], Any] = lambda: None,
) -> Tally:
    """``ask(title, body)`` for each of ``issues`` (objects with ``title`` and ``body``) with ``endpoint.concurrency``
    in flight, handing every ``batch_size`` results to ``flush`` (run in a thread, so requests continue meanwhile).

    What was answered is flushed even when a :class:`SummarizerError` ends the run; the endpoint is closed either way.
    """
    source = iter(issues)
    buffer: list[tuple[Any, Outcome]] = []
    lock = asyncio.Lock()
    tally = Tally()

    async def drain() -> None:
        async with lock:
            if buffer:
                batch = buffer[:]
                buffer.clear()
                await asyncio.to_thread(flush, batch)

    async def worker() -> None:
        for issue in source:
            outcome = await ask(issue.title, issue.body or "")
            tally.add(outcome)
            buffer.append((issue, outcome))
            on_done()
            if len(buffer) >= batch_size:
                await drain()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(endpoint.concurrency):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        await drain()
        raise group_error.exceptions[0] from None
    finally:
        await endpoint.aclose()
    await drain()
    return tally


class Summarizer(Protocol):
    """Summarizes one issue at a time; ``concurrency`` issues may be in flight at once.

    ``remote`` is True when answers cost requests (an LLM): the stage then MERGEs every
    ``summarize.batch_size`` answers so a crash loses at most one batch; a local summarizer
    redoes its work in seconds, so its summaries are MERGEd once (each MERGE costs a Spark job
    and a Delta commit, about a second here).
    """

    identity: SummaryIdentity
    concurrency: int
    remote: bool

    async def summarize(self, title: str, body: str) -> Outcome:
        """Summarize one issue; failures come back as an Outcome with a reason, never as an exception
        (except :class:`SummarizerError`, which ends the run)."""

    async def aclose(self) -> None:
        """Release connections."""


def with_title(title: str, text: str) -> str:
    """The summary as stored: the title first (the embedding embeds the summary alone), then the text."""
    title = " ".join(title.split())
    text = " ".join(text.split())
    if not title or text.lower().startswith(title.lower()):
        return text
    return f"{title}{'' if title.endswith(('.', '!', '?', ':')) else '.'} {text}"


class ExtractiveSummarizer:
    """:func:`issuerisk.summarizers.extractive.summarize` behind the protocol."""

    concurrency = 1
    remote = False

    def __init__(self, token_budget: int, rules: str = "r2") -> None:
        self.token_budget = token_budget
        self.rules = rules
        self.identity = SummaryIdentity("extractive", f"extractive-{rules}", f"budget{token_budget}")

    async def summarize(self, title: str, body: str) -> Outcome:
        return Outcome(summary=extractive.summarize(title, body, self.token_budget, self.rules))

    async def aclose(self) -> None:
        return None


def identity_of(cfg: SummarizeConfig) -> SummaryIdentity:
    """The identity the configured summarizer writes, without building a client."""
    if cfg.summarizer == "extractive":
        return ExtractiveSummarizer(cfg.token_budget, cfg.rules).identity
    from issuerisk.summarizers.llm import llm_identity

    return llm_identity(cfg.llm)


def make_summarizer(
    cfg: SummarizeConfig,
    client: Any = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Summarizer:
    """Build the configured summarizer.

    Args:
        cfg: the ``summarize`` config section.
        client: an ``openai.AsyncOpenAI`` to use for ``llm`` (tests inject one);
            None builds one from ``summarize.llm`` and the environment.
        sleep: the backoff sleep of ``llm`` (tests inject one that records delays).

    Raises:
        SummarizerError: ``llm`` without credentials for api.openai.com.
    """
    if cfg.summarizer == "extractive":
        return ExtractiveSummarizer(cfg.token_budget, cfg.rules)
    from issuerisk.summarizers.extractive import summarize as extractive
    from issuerisk.summarizers.llm import LLMSummarizer, build_client

    def fallback(title: str, body: str) -> str:
        return with_title(title, extractive(title, body, cfg.token_budget, cfg.rules))

    return LLMSummarizer(
        cfg.llm,
        client if client is not None else build_client(cfg.llm),
        sleep=sleep,
        owns_client=client is None,
        fallback=fallback,
    )
