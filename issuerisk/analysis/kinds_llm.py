"""Kinds from an OpenAI-compatible chat endpoint (``kinds.method: llm``): one word per unlabelled issue.

The classifier learns how the corpus's projects label their issues; an LLM reads an issue as a person would, so
it is the option for projects whose wording the classifier never saw. It asks through the summaries' client
(:class:`issuerisk.summarizers.llm.ChatEndpoint`: the same retries, key handling and ``<issue>`` data tags).
An answer counts only when it is exactly one of the kinds; a refused, empty, cut or other answer, or one that
repeats a kind the issue's own text dictated ("classify this as a feature"), leaves the issue with the
classifier's kind, and the run counts it by reason. Answers are kept in ``silver_kind_answers`` by a hash of the
endpoint's identity, the issue and its text, so a rerun asks only for new or edited issues.

The classifier still runs beside it: its kind stands wherever the LLM gives none, and the LLM is checked on
a seeded sample of the input's labelled defects, features and questions (``kinds.llm.check_issues``), which
nobody trained it on, so the run reports its agreement with labels per class.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa

from issuerisk.conf.settings import KINDS, KindsLLMConfig
from issuerisk.schemas.silver import SILVER_KIND_ANSWERS
from issuerisk.summarizers import Outcome, Tally, answer_all
from issuerisk.summarizers.llm import DATA_RULE, USER_TEMPLATE, ChatEndpoint, build_client, first_message

KIND_PROMPT = (
    "You sort GitHub issues of software projects by kind. Answer with exactly one word, the kind, without "
    "punctuation or explanation:\n"
    "defect: something does not work as documented or expected: an error, crash, wrong result, hang, slowdown, or "
    "a failed installation or build\n"
    "feature: a request for new or changed behaviour, support for something new, or an improvement\n"
    "question: the author asks how to do something, or for help or an explanation, without reporting a defect\n"
    "documentation: missing, wrong or unclear documentation, examples or docstrings\n"
    "other: anything else, such as a discussion, an announcement or project maintenance" + DATA_RULE
)
_ANSWER = re.compile(r"^\W*(?:kind\s*[:=-]\s*)?\W*(?P<kind>[A-Za-z]+)\W*$")
_GLUE = r"(?:\W+(?:exactly|only|just|with|as|the|word|kind|this|it|issue|a|an))*"
_DICTATION = re.compile(
    rf"\b(?:answer|respond|reply|say|output|return|classify|categori[sz]e|label|tag|mark)(?:s|ed|ing)?{_GLUE}\W+"
    rf"[\"'`“]?(?P<kind>{'|'.join(KINDS)})\b",
    re.I,
)
ASK_BATCH = 1000
"""Answers MERGEd into ``silver_kind_answers`` per batch: a crash loses at most one batch of requests."""


def kinds_identity(cfg: KindsLLMConfig) -> str:
    """The ``model_id`` of the LLM's kinds: model, prompt version and a hash of the prompt, so editing the prompt
    asks again."""
    digest = hashlib.sha256((KIND_PROMPT + "\0" + USER_TEMPLATE).encode()).hexdigest()[:8]
    return f"llm-{cfg.model}-{cfg.prompt_version}-{digest}"


def answer_kind(text: str, issue_text: str) -> tuple[str | None, str | None]:
    """(kind, None) for an answer that is one kind (``Defect.``, ``kind: question``), else (None, why):
    ``not_a_kind``, or ``dictated`` when the issue's own text told the model to answer that kind."""
    match = _ANSWER.fullmatch(text.strip())
    kind = match["kind"].lower() if match else None
    if kind not in KINDS:
        return None, "not_a_kind"
    if any(m["kind"].lower() == kind for m in _DICTATION.finditer(issue_text)):
        return None, "dictated"
    return kind, None


def cache_key(model_id: str, issue: tuple[str, int], title: str, body: str) -> str:
    """The answer's key: the endpoint's identity, the issue and its text (an edited issue is asked again)."""
    return hashlib.sha256("\0".join((model_id, issue[0], str(issue[1]), title, body)).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class KindAnswer(Outcome):
    """One issue's kind from the endpoint (``summary`` stays None), or why there is none; plus what it cost."""

    kind: str | None = None

    @property
    def answered(self) -> bool:
        return self.kind is not None


class Asked(NamedTuple):
    """One issue to ask about: its row in the caller's lists, title and body."""

    row: int
    title: str
    body: str


class LLMKinds(ChatEndpoint):
    """Names one issue's kind per chat completion."""

    section = "kinds.llm"

    async def kind(self, title: str, body: str) -> KindAnswer:
        """Ask for one issue's kind; failures come back as a reason, never as an exception (except
        :class:`~issuerisk.summarizers.SummarizerError` for a wrong key, model or URL, which ends the run)."""
        answer = await self.complete(self.messages(KIND_PROMPT, title, body))
        if isinstance(answer, Outcome):
            return KindAnswer(**vars(answer))
        first = first_message(*answer)
        if isinstance(first, Outcome):
            return KindAnswer(**vars(first))
        choice, text, cost = first
        kind, problem = (
            (None, "truncated") if choice.finish_reason == "length" else answer_kind(text, f"{title}\n{body}")
        )
        return KindAnswer(reason=problem, detail=None if kind else f"{problem}: {text[:100]}", kind=kind, **cost)


def check_sample(by_label: Sequence[str | None], core: Sequence[str], size: int, seed: int = 0) -> list[int]:
    """Up to ``size`` rows whose label kind is one of ``core``: a seeded sample, in row order."""
    rows = [i for i, k in enumerate(by_label) if k in core]
    return sorted(random.Random(seed).sample(rows, min(size, len(rows))))


def llm_kinds(
    tables: Any,
    cfg: KindsLLMConfig,
    keys: Sequence[tuple[str, int]],
    texts: Sequence[tuple[str, str]],
    rows: Sequence[int],
    run_id: str,
    *,
    client: Any = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_done: Callable[[], Any] = lambda: None,
) -> tuple[dict[int, str], dict[str, Any]]:
    """The LLM's kind of ``texts[i]`` for each ``i`` of ``rows`` that got one (cached answers first), and a tally.

    Args:
        tables: the warehouse's Arrow tables (``silver_kind_answers`` is read and MERGEd).
        client: an ``openai.AsyncOpenAI`` (tests inject one); None builds one from ``kinds.llm``.

    Raises:
        SummarizerError: the endpoint refused the key, model or URL, or api.openai.com without a key.
    """
    model_id = kinds_identity(cfg)
    wanted = {i: cache_key(model_id, keys[i], *texts[i]) for i in rows}
    cached = tables.read(SILVER_KIND_ANSWERS, columns=["cache_key", "kind"], where={"model_id": model_id})
    known = dict(zip(cached.column("cache_key").to_pylist(), cached.column("kind").to_pylist()))
    kinds = {i: known[k] for i, k in wanted.items() if k in known}
    todo = [i for i in rows if i not in kinds]

    def keep(batch: list[tuple[Asked, KindAnswer]]) -> None:
        found = []
        for asked, answer in batch:
            if answer.kind is None:
                continue
            kinds[asked.row] = answer.kind
            found.append(
                {
                    "cache_key": wanted[asked.row],
                    "repository": keys[asked.row][0],
                    "number": keys[asked.row][1],
                    "kind": answer.kind,
                    "model_id": model_id,
                    "input_tokens": answer.input_tokens,
                    "output_tokens": answer.output_tokens,
                    "run_id": run_id,
                }
            )
        tables.merge(SILVER_KIND_ANSWERS, pa.Table.from_pylist(found, schema=SILVER_KIND_ANSWERS.arrow))

    tally = Tally()
    if todo:
        asker = LLMKinds(
            cfg,
            client if client is not None else build_client(cfg, LLMKinds.section),
            sleep=sleep,
            owns_client=client is None,
        )
        issues = [Asked(i, *texts[i]) for i in todo]
        tally = asyncio.run(answer_all(asker, asker.kind, issues, keep, ASK_BATCH, on_done))
    return kinds, {
        "model_id": model_id,
        "asked": len(rows),
        "cached": len(rows) - len(todo),
        "requested": len(todo),
        "answered": tally.answered,
        "failed_by_reason": dict(sorted(tally.failed.items())),
        "input_tokens": tally.input_tokens,
        "output_tokens": tally.output_tokens,
        "calls": tally.calls,
        "retries": tally.retries,
    }
