"""Deterministic, offline issue summaries: the title, the failure and the most informative sentences.

Issue bodies are mostly template boilerplate, environment listings, logs, stack
traces and code. The summary keeps what tells one issue from another: the
title, the exception type and message with the call that raised it, framework
API names, and the prose sentences that describe the problem, within a budget
of whitespace tokens. Everything is precompiled regexes and one pass over the
lines, so one slow core summarizes thousands of issues per second.

Rules ``r2`` (the default) describe the failure first, in the order the LLM
prompt asks for: after the title the error types and messages (the symptom),
then the framework API calls (the trigger), then the versions the environment
section gives (framework, CUDA, Python, OS), then the descriptive sentences.
Rules ``r1`` keep the earlier order (title, errors, sentences) for comparison.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RULES = ("r1", "r2")
MAX_APIS = 3
MAX_VERSIONS = 3
MAX_BODY_CHARS = 24_000
TAIL_CHARS = 6_000
MAX_ERRORS = 2
MAX_CODE_LINES = 2
MAX_SENTENCES = 60
ERROR_FIELD, API_FIELD, ENV_FIELD, CODE_FIELD = "Error", "API", "Env", "Code"
FIELD_LABELS = (ERROR_FIELD, API_FIELD, ENV_FIELD, CODE_FIELD)
"""The labels of a summary's facts ("Error: ...", "API: ...", "Env: ...", "Code: ..."): the summary's form, not the
issue's words (:func:`issuerisk.summarizers.without_field_labels`)."""

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_HTML_TAG = re.compile(r"</?(?:details|summary|br|p|img|b|i|code|pre|sub|sup|kbd)\b[^>]*>", re.I)
_FENCE = re.compile(r"^\s*(?:```|~~~)")
_HEADING = re.compile(
    r"^\s{0,3}(?:#{1,6}\s*(?P<h1>.*?)\s*#*|\*\*(?P<h2>[^*]{1,120})\*\*:?|__(?P<h3>[^_]{1,120})__:?)\s*$"
)
_SKIP_SECTION = re.compile(
    r"system information|environment|^versions?\b|version information|operating system|device type|"
    r"willingness to contribute|code of conduct|tracking information|what "
    r"(?:components|interfaces|languages|integrations)|"
    r"existing issue|search before asking|issues? policy|checklist|before submitting|component versions|"
    r"desktop|smartphone|your operating system|mode$|deeplabcut version|mlflow version"
)
_BOILERPLATE = re.compile(
    r"clear and concise description|steps to reproduce the behaviou?r|please fill in this|if applicable,? add "
    r"screenshots|"
    r"add any other context|please complete the following information|it is highly recommended|thanks? for "
    r"(?:contributing|your contribution)|"
    r"please (?:provide|include|describe|make sure|read|search|check)|delete (?:this|the) (?:line|section|template)|"
    r"describe the (?:bug|problem|issue|solution|alternatives?|proposal)|^(?:expected|actual) behaviou?r:?$|^(?:steps "
    r")?to reproduce:?$|"
    r"is your feature request related|a description of what you expected|tell us what|link to the|"
    r"during handling of the above exception|the above exception was the direct cause|place (?:your )?code|"
    r"^(?:ok|n/?a|none|no|yes|-+|\*+|_+)\.?$",
)
_CHECKLIST = re.compile(r"^\s*(?:[-*+]|\d+\.)\s*\[[ xX]?\]")
_KEY_VALUE = re.compile(r"^\s*(?:[-*+]\s*)?[\w ./()-]{2,60}:\s*\S[^.!?]{0,80}$")
_TRACEBACK_START = "Traceback (most recent call last)"
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+, in (?P<func>[\w<>.]+)')
_EXCEPTION = re.compile(
    r"^\s*(?:E\s+)?(?P<type>(?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Fault|Failure|NotFound|Warning))(?::\s*(?P<msg>.*))?$"
)
_ERROR_WORDS = frozenset(
    "error errors exception exceptions fail fails failed failing failure crash crashes crashed segfault abort aborted "
    "cannot can't unable invalid wrong incorrect mismatch nan inf hang hangs stuck freeze freezes frozen leak leaks "
    "leaking oom slow slower deadlock unexpected unexpectedly undefined missing broken bug".split()
)
_ERROR_PHRASES = (
    "not found",
    "not supported",
    "out of memory",
    "does not work",
    "doesn't work",
    "not working",
    "can not",
    "core dumped",
    "segmentation fault",
)
_PUNCT_TO_SPACE = str.maketrans({c: " " for c in '()[]{}<>,.;:!?"\\/|=*`~'})
_LOG_LINE = re.compile(
    r"^\s*(?:\[?\d{4}[-/]\d\d[-/]\d\d[ T]|\[?\d\d:\d\d:\d\d|[IWEF]\d{4} \d\d:|(?:INFO|DEBUG|WARNING|WARN|TRACE)\b[:\] "
    r"]|"
    r"\d+/\d+ \[|Epoch \d+|\d+%\|)",
    re.I,
)
_LOG_PREFIX = re.compile(
    r"^\s*(?:\[?\d{4}[-/]\d\d[-/]\d\d[ T][\d:.,]+\]?:?\s*|[IWEF]\d{4} "
    r"[\d:.]+\s+\d+\s+[\w.]+:\d+\]\s*|\[?(?:ERROR|CRITICAL|FATAL)\]?[: ]\s*)+"
)
_API = re.compile(
    r"\b(?:torch|tf|tensorflow|keras|nn|F|jax|np|numpy|cuda|cudnn|onnx|mlflow|sklearn|pl|transformers)\.[A-Za-z_][\w.]*(?:\(\))?"
)
_CODE_LIKE = re.compile(
    r"^(?:\s{4}|\t)|[,(\[{=\\;]\s*$|^\s*[)\]}]|^\s*(?:def |class |import |from \S+ import|for \S.* in |return "
    r"|print\(|@\w)|"
    r"^\s*[\w.\[\]'\"]+\s*=\s*\S"
)
_CALL = re.compile(r"[A-Za-z_][\w.]*\(")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(\[])")
_INLINE_CODE = re.compile(r"`([^`\n]{1,200})`")
_LINK = re.compile(r"!?\[([^\]]*)\]\((?:[^)]+)\)")
_URL = re.compile(r"https?://\S+")
_LIST_MARK = re.compile(r"^\s*(?:[-*+>]|\d+[.)])\s+")
_VERSION_NAMES = {"pytorch": "torch", "tf": "tensorflow", "tensorflow-gpu": "tensorflow", "onnxruntime": "onnxruntime"}
_VERSION = re.compile(
    r"(?i)\b(pytorch|torch|tensorflow(?:-gpu)?|tf|keras|cuda|cudnn|python|numpy|jax|onnx(?:runtime)?|ubuntu|windows|macos|centos|debian)"
    r"\b(?:\s*(?:version|ver\.?|v)?\s*[:=]{0,2}\s*)(\d+(?:\.\d+){0,2})"
)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|dear|thanks?|thank you|greetings|good (?:morning|afternoon)|any "
    r"(?:help|idea|suggestion)s?|regards)\b",
    re.I,
)


@dataclass(frozen=True)
class Piece:
    """A candidate sentence: its text, score and position in the body."""

    text: str
    score: float
    order: int


def clip_body(body: str, head: int = MAX_BODY_CHARS, tail: int = TAIL_CHARS) -> str:
    """The start and end of a very long body (errors sit at the end of logs), dropping the middle."""
    if len(body) <= head + tail:
        return body
    return body[:head] + "\n" + body[-tail:]


def _errorish(text: str) -> bool:
    lower = text.lower()
    if not _ERROR_WORDS.isdisjoint(lower.translate(_PUNCT_TO_SPACE).split()):
        return True
    return any(phrase in lower for phrase in _ERROR_PHRASES)


def _clean(text: str) -> str:
    if "](" in text:
        text = _LINK.sub(r"\1", text)
    if "://" in text:
        text = _URL.sub("", text)
    if "`" in text:
        text = _INLINE_CODE.sub(r"\1", text)
    if "**" in text:
        text = text.replace("**", "")
    return " ".join(text.split()).strip(" -*>#:|")


def _error_text(line: str) -> str:
    return " ".join(_LOG_PREFIX.sub("", line).replace("**", "").split())[:240]


def _sentence_score(sentence: str, order: int) -> float:
    words = sentence.count(" ") + 1
    if words < 3:
        return -1.0
    score = 0.0
    if _errorish(sentence):
        score += 2.0
    if "(" in sentence and _CALL.search(sentence) or "." in sentence and _API.search(sentence):
        score += 1.5
    if order < 2:
        score += 1.0
    if _GREETING.match(sentence):
        score -= 2.0
    if words > 60:
        score -= 1.0
    return score


class _Scan:
    """One pass over a body's lines, sorting them into errors, code and prose."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.code: list[str] = []
        self.prose: list[str] = []
        self.apis: list[str] = []
        self.versions: dict[str, str] = {}
        self.frame: str | None = None
        self.in_traceback = False

    def facts(self, line: str) -> None:
        """Framework API calls and versions a line names (kept in order of first mention)."""
        if "." in line:
            for api in _API.findall(line):
                api = api.rstrip("().")
                if api.count(".") >= 1 and api not in self.apis:
                    self.apis.append(api)
        for name, version in _VERSION.findall(line):
            self.versions.setdefault(_VERSION_NAMES.get(name.lower(), name.lower()), version)

    def _exception(self, line: str) -> bool:
        if ":" not in line and not self.in_traceback:
            return False
        m = _EXCEPTION.match(line)
        if m is None or (m.group("msg") is None and not self.in_traceback):
            return False
        text = f"{m.group('type')}: {m.group('msg').strip()}" if m.group("msg") else m.group("type")
        text = text.replace("**", "").replace("`", "")
        if self.frame:
            text += f" (in {self.frame})"
        self._error(text)
        self.in_traceback = False
        self.frame = None
        return True

    def _error(self, text: str) -> None:
        text = text[:240]
        if text not in self.errors:
            self.errors.append(text)

    def _traceback_or_error(self, line: str) -> bool:
        """Consume a traceback header, frame, exception or error-log line; False for anything else."""
        if _TRACEBACK_START in line:
            self.in_traceback = True
            return True
        frame = _FRAME.match(line) if 'File "' in line else None
        if frame:
            self.frame = frame.group("func")
            return True
        if self.in_traceback and line.startswith((" ", "\t")):
            return True
        if self._exception(line):
            return True
        self.in_traceback = False
        if _LOG_LINE.match(line):
            if "error" in line.lower():
                self._error(_error_text(line))
            return True
        return False

    def code_line(self, line: str) -> None:
        """A line inside a code fence: traceback frames and errors matter, API calls may."""
        if self._traceback_or_error(line) or len(self.code) >= 8:
            return
        stripped = line.strip()
        if 8 <= len(stripped) <= 160 and _API.search(stripped) and not stripped.startswith(("#", "import ", "from ")):
            self.code.append(stripped)

    def text_line(self, line: str) -> None:
        """A line outside code fences: raw tracebacks and logs are common there too."""
        if self._traceback_or_error(line):
            return
        if _CODE_LIKE.search(line):
            self.code_line(line)
            return
        if _CHECKLIST.match(line) or (len(line) < 200 and _BOILERPLATE.search(line.strip().lower())):
            return
        if _KEY_VALUE.match(line) and not _errorish(line):
            return
        self.prose.append(_LIST_MARK.sub("", line))


def _scan(body: str) -> _Scan:
    body = _HTML_TAG.sub(" ", _HTML_COMMENT.sub("", body.replace("\r", "")))
    scan = _Scan()
    in_fence = False
    skipping = False
    for line in body.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            scan.in_traceback = False
            continue
        if not line.strip():
            continue
        scan.facts(line)
        if in_fence:
            if not skipping:
                scan.code_line(line)
            continue
        heading = _HEADING.match(line)
        if heading:
            title = (heading.group("h1") or heading.group("h2") or heading.group("h3") or "").lower()
            skipping = bool(_SKIP_SECTION.search(title))
            continue
        if not skipping:
            scan.text_line(line)
    return scan


def _take(budget: int, used: int, text: str) -> tuple[str | None, int]:
    words = text.split()
    if used + len(words) <= budget:
        return text, used + len(words)
    room = budget - used
    if room >= 6:
        return " ".join(words[:room]) + " ...", budget
    return None, used


def summarize(title: str, body: str | None, token_budget: int, rules: str = "r2") -> str:
    """Summarize one issue: the title, its failure (errors; with ``r2`` also API calls and versions), key code and the
    most informative sentences.

    Args:
        title: the issue title (always kept first).
        body: the Markdown body; None or empty gives the title alone.
        token_budget: the summary's length limit in whitespace-separated tokens.
        rules: ``r2`` (failure first) or ``r1`` (the earlier order).

    Returns:
        Plain text starting with the title, never longer than ``token_budget`` tokens
        (plus a trailing ``...`` where a piece was cut).

    Raises:
        ValueError: unknown rules.
    """
    if rules not in RULES:
        raise ValueError(f"summarize.rules={rules!r} is unknown; use one of {RULES}")
    title = _clean(title or "")
    head, used = _take(token_budget, 0, title)
    parts = [head or " ".join(title.split()[:token_budget])]
    used = len(parts[0].split())
    if not body or used >= token_budget:
        return parts[0]
    scan = _scan(clip_body(body))
    facts = [
        f"{ERROR_FIELD}: " + e.rstrip(".") + "."
        for e in [e for e in scan.errors if e.split(" (in ")[0].lower() not in title.lower()][:MAX_ERRORS]
    ]
    if rules == "r2":
        said = " ".join([title, *facts])
        apis = [a for a in scan.apis if a not in said][:MAX_APIS]
        if apis:
            facts.append(f"{API_FIELD}: " + ", ".join(apis) + ".")
        if scan.versions:
            facts.append(
                f"{ENV_FIELD}: "
                + ", ".join(f"{name} {v}" for name, v in list(scan.versions.items())[:MAX_VERSIONS])
                + "."
            )
    for fact in facts:
        text, used = _take(token_budget, used, fact)
        if text:
            parts.append(text)
    pieces: list[Piece] = []
    order = 0
    for line in scan.prose:
        if order >= MAX_SENTENCES:
            break
        for sentence in _SENTENCE_SPLIT.split(_clean(line)):
            if sentence and sentence.lower() != title.lower():
                pieces.append(Piece(sentence, _sentence_score(sentence, order), order))
                order += 1
    has_api = bool(_API.search(" ".join(parts)))
    for i, code in enumerate(scan.code[:MAX_CODE_LINES]):
        if not has_api or scan.errors:
            pieces.append(Piece(f"{CODE_FIELD}: " + code, 1.8 - i * 0.1, order + i))
    chosen: list[Piece] = []
    for piece in sorted((p for p in pieces if p.score >= 0), key=lambda p: (-p.score, p.order)):
        text, used = _take(token_budget, used, piece.text)
        if text:
            chosen.append(Piece(text, piece.score, piece.order))
        if used >= token_budget:
            break
    parts.extend(p.text for p in sorted(chosen, key=lambda p: p.order))
    return " ".join(p if p.endswith((".", "!", "?", "...", ":")) else p + "." for p in parts)


def error_lines(body: str) -> list[str]:
    """Every exception and error-log line of a body, however long (kept when LLM input is cut)."""
    return _scan(body).errors
