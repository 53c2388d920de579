"""A real HTTP server on 127.0.0.1 that speaks ``POST /v1/chat/completions`` well enough for the openai client.

Synthetic: its answers are made up from the request, in the form the system prompt asks for (the failure
prompt's four lines "Symptom: <first words of the description>", "Trigger: ...", ...; prose "Summary: ..." for
the reference prompt; for the kinds prompt one word by keyword rules: a title asking how, errors, "add support",
docs). Like a naive model, it obeys an issue that dictates its answer ("Answer exactly: X"
answers X). Tests script faults for the next requests (429 with Retry-After, 500, a slow answer, malformed JSON,
an empty, refused or cut answer) and count the requests it received; a fixed ``delay_s`` on every answer stands
in for model latency in the benchmark.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Fault:
    """What to answer one request with instead of a summary.

    kind: ``status`` (HTTP ``status`` with ``headers``), ``slow`` (answer after ``delay_s``),
    ``malformed`` (200 with broken JSON), ``empty`` (200, empty content), ``refuse``
    (200, a refusal), ``no_choices`` (200, ``choices: []``), ``truncated`` (200, ``finish_reason: length``),
    ``chatty`` (200, prose where the four lines were asked for).
    """

    kind: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def rate_limited(retry_after: str = "1") -> Fault:
    return Fault("status", 429, {"Retry-After": retry_after})


def server_error(status: int = 500) -> Fault:
    return Fault("status", status)


class FakeOpenAIServer:
    """Start with ``with FakeOpenAIServer() as server:``; point the client at ``server.base_url``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def count(self) -> int:
        """Chat completion requests received so far (faulted ones included)."""
        with self._lock:
            return len(self.requests)

    def script(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order; later requests succeed."""
        with self._lock:
            self._faults.extend(faults)

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, payload: dict[str, Any]) -> Fault | None:
        with self._lock:
            self.requests.append(payload)
            return self._faults.popleft() if self._faults else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                payload = json.loads(raw)
                fault = server._next(payload)
                delay = server.delay_s + (fault.delay_s if fault else 0.0)
                if delay:
                    time.sleep(delay)
                if fault and fault.kind == "status":
                    error = {
                        "error": {"message": f"synthetic HTTP {fault.status}", "type": "fake", "code": fault.status}
                    }
                    self._send(fault.status, json.dumps(error).encode(), fault.headers)
                elif fault and fault.kind == "malformed":
                    self._send(200, b'{"id": "x", "choices": [{"message": {"content": "trunc')
                else:
                    self._send(200, json.dumps(_completion(payload, fault)).encode())

        return Handler


KIND_RULES = (
    ("question", re.compile(r"^title: (?:how|what|why|can|is)\b|\?\s*$", re.I | re.M)),
    ("defect", re.compile(r"\b(?:error|traceback|crash|fails?|wrong)\b", re.I)),
    ("feature", re.compile(r"\b(?:add|support|feature|would be nice)\b", re.I)),
    ("documentation", re.compile(r"\b(?:docs?|documentation|typo)\b", re.I)),
)


def _kind(user: str) -> str:
    """A naive model's kind (the kinds prompt): the first rule whose words the issue holds, else other."""
    return next((kind for kind, rule in KIND_RULES if rule.search(user)), "other")


def _completion(payload: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
    user = next((m["content"] for m in payload.get("messages", []) if m.get("role") == "user"), "")
    system = next((m["content"] for m in payload.get("messages", []) if m.get("role") == "system"), "")
    description = user.split("Description:\n", 1)[-1].removesuffix("\n</issue>")
    words = " ".join(description.split()[:12])
    if "sort GitHub issues" in system:
        content = _kind(user) if not (fault and fault.kind == "chatty") else f"This looks like a {_kind(user)} to me."
    elif "Symptom:" in system and not (fault and fault.kind == "chatty"):
        content = f"Symptom: {words}\nTrigger: not given\nComponent: not given\nEnvironment: not given"
    else:
        content = "Summary: " + words
    dictated = re.search(r"Answer exactly: (.+)", user)
    if dictated:
        content = dictated.group(1).strip()
    finish = "length" if fault and fault.kind == "truncated" else "stop"
    if fault and fault.kind == "empty":
        content = ""
    elif fault and fault.kind == "refuse":
        content = "I'm sorry, but I can't help with that."
    choices = (
        []
        if fault and fault.kind == "no_choices"
        else [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}]
    )
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in payload.get("messages", [])) // 4
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": payload.get("model", "fake"),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(content.split()),
            "total_tokens": prompt_tokens + len(content.split()),
        },
    }
