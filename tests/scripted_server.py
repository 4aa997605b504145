"""A scripted OpenAI-compatible HTTP server for tests: no model, no network.

It speaks just enough of the API for the real ``openai`` client: ``POST
/v1/chat/completions`` and ``GET /v1/models``. Each chat request is answered, in this
order, by a fault planned for that request number (``fault_at``), by the next queued
reply (``push``), or by the ``handler`` callable, which computes a reply from the
request (e.g. reads the parent program from the prompt and returns a SEARCH/REPLACE
diff). Every request is recorded so tests can assert on prompts and headers.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "scripted-model"


@dataclass
class Reply:
    """One scripted answer: a completion, or a fault (status, garbage, delay, no choices)."""

    content: str = ""
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None  # sent as-is (garbage); content and status are then ignored
    empty_choices: bool = False
    drop_connection: bool = False  # close the socket without an answer


def error(status: int, message: str = "scripted fault", **headers: str) -> Reply:
    return Reply(status=status, content=message, headers=dict(headers))


GARBAGE = Reply(raw=b"<html>502 bad gateway, not JSON at all")

Handler = Callable[[dict[str, Any]], "Reply | str"]


def _default_handler(request: dict[str, Any]) -> Reply:
    return Reply(content="OK")


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any]
    number: int  # 1-based count among chat requests (0 for other paths)

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.body.get("messages", [])

    @property
    def text(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.messages)


class ScriptedServer:
    """Start with ``with ScriptedServer(handler) as server:``; ``server.base_url`` ends in /v1."""

    def __init__(self, handler: Handler | None = None, model: str = MODEL) -> None:
        self.handler: Handler = handler or _default_handler
        self.model = model
        self.requests: list[Recorded] = []
        self._queue: list[Reply | str] = []
        self._faults: dict[int, Reply] = {}
        self._chat_count = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # ----------------------------------------------------------------- script
    def push(self, *replies: Reply | str) -> None:
        with self._lock:
            self._queue.extend(replies)

    def fault_at(self, number: int, reply: Reply) -> None:
        """Answer the ``number``-th chat request (1-based) with ``reply``."""
        with self._lock:
            self._faults[number] = reply

    @property
    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.number]

    # -------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # --------------------------------------------------------------- answers
    def _answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        with self._lock:
            self._chat_count += 1
            number = self._chat_count
            recorded = Recorded(path, headers, body, number)
            self.requests.append(recorded)
            reply = self._faults.pop(number, None)
            if reply is None and self._queue:
                reply = self._queue.pop(0)
        if reply is None:
            reply = self.handler(body)
        return Reply(content=reply) if isinstance(reply, str) else reply

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ]
        return {
            "id": f"chatcmpl-{self._chat_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [] if reply.empty_choices else choices,
            "usage": {
                "prompt_tokens": max(1, prompt_chars // 4),
                "completion_tokens": max(1, len(reply.content) // 4),
                "total_tokens": max(1, prompt_chars // 4) + max(1, len(reply.content) // 4),
            },
        }


def _make_handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            return None

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if self.path.rstrip("/").endswith("/models"):
                with server._lock:
                    server.requests.append(Recorded(self.path, dict(self.headers), {}, 0))
                data = {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                self._send(200, json.dumps(data).encode())
            else:
                self._send(404, b'{"error": {"message": "not found"}}')

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, b'{"error": {"message": "not found"}}')
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, b'{"error": {"message": "request is not JSON"}}')
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = server._answer(self.path, headers, body)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.drop_connection:
                self.close_connection = True
                self.connection.close()
                return
            if reply.raw is not None:
                self._send(200, reply.raw, reply.headers)
            elif reply.status != 200:
                payload = {"error": {"message": reply.content, "type": "scripted"}}
                self._send(reply.status, json.dumps(payload).encode(), reply.headers)
            else:
                self._send(200, json.dumps(server._completion(body, reply)).encode())

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(payload)

    return _Handler


# ------------------------------------------------------------ script helpers
def role_of(request: dict[str, Any]) -> str:
    """researcher / analyzer / judge / other, from the built-in system prompts."""
    messages = request.get("messages") or []
    system = messages[0].get("content", "") if messages and messages[0]["role"] == "system" else ""
    for role in ("Researcher", "Analyzer", "Judge"):
        if f"You are the {role}" in system:
            return role.lower()
    return "other"


def last_user(request: dict[str, Any]) -> str:
    users = [m for m in request.get("messages") or [] if m.get("role") == "user"]
    return str(users[-1].get("content", "")) if users else ""


def parent_program(request: dict[str, Any]) -> str:
    """The parent program as the built-in researcher prompt shows it."""
    import re

    first_user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    match = re.search(r"^## Parent program\n```[\w+-]*\n(.*?)\n```$", first_user, re.S | re.M)
    if match is None:
        raise ValueError("no parent program in the prompt")
    return match.group(1)


def search_replace(old: str, new: str) -> str:
    return f"<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE"


class ConstantEditor:
    """A researcher that edits one line per answer: the first rule whose text it still finds.

    ``rules`` are (old, new) substrings; a rule applies to the first program line that
    contains ``old``. When none applies, a harmless comment line is appended instead.
    """

    def __init__(self, rules: list[tuple[str, str]], bad_first: bool = False) -> None:
        self.rules = rules
        self.bad_first = bad_first  # the very first answer has a SEARCH that does not match
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.count += 1
            count = self.count
        if count == 1 and self.bad_first:
            return Reply(
                "<name>bad-edit</name>\n<motivation>An edit with a wrong SEARCH.</motivation>\n"
                + search_replace("this line is not in the program", "x = 1")
            )
        code = parent_program(request)
        lines = code.split("\n")
        rules = self.rules[count % len(self.rules) :] + self.rules[: count % len(self.rules)]
        for old, new in rules:
            for line in lines:
                if old in line:
                    edited = line.replace(old, new)
                    return Reply(
                        f"<name>set-{new.strip()}</name>\n<motivation>Change {old.strip()!r} to "
                        f"{new.strip()!r}: the scripted model expects this constant to matter."
                        "</motivation>\n```python\n" + search_replace(line, edited) + "\n```"
                    )
        last = lines[-1] if lines[-1].strip() else lines[-2]
        return Reply(
            f"<name>note-{count}</name>\n<motivation>A no-op note, nothing left to tune."
            "</motivation>\n" + search_replace(last, f"{last}\n# scripted note {count}")
        )


def analysis_reply(request: dict[str, Any]) -> Reply:
    import re

    prompt = last_user(request)
    match = re.search(r"^Status: (\w+), score (\S+)", prompt, re.M)
    status, score = match.groups() if match else ("?", "?")
    return Reply(
        f"<analysis>LLM analysis: the candidate is {status} with score {score}; keep tuning "
        "the constant that moved.</analysis>\n"
        "<knowledge><title>Scripted lesson</title><content>Single-constant edits are cheap "
        "probes.</content></knowledge>"
    )


def agents_script(
    researcher: Handler, analyzer: Handler = analysis_reply, judge: Handler | None = None
) -> Handler:
    """One handler answering each role from its own script."""

    def handle(request: dict[str, Any]) -> Reply | str:
        role = role_of(request)
        if role == "researcher":
            return researcher(request)
        if role == "analyzer":
            return analyzer(request)
        if role == "judge" and judge is not None:
            return judge(request)
        return Reply("OK")

    return handle
