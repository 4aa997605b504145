"""A scripted OpenAI-compatible HTTP server for tests: no model, no network.

It speaks just enough of the API for the real ``openai`` client: ``POST
/v1/chat/completions`` and ``GET /v1/models``. Each chat request is answered, in this
order, by a refusal of a parameter the model does not take (``refuse``), by a fault
planned for that request number (``fault_at``), by the next queued reply (``push``), or by
the ``handler`` callable, which computes a reply from the request (e.g. reads the parent
program from the prompt and returns a SEARCH/REPLACE diff). Every request is recorded so
tests can assert on prompts and headers.

Real models it can behave like: a reasoning model (``refuse=REASONING_REFUSALS``: HTTP 400
"Unsupported parameter" for ``max_tokens``, "Unsupported value" for ``temperature`` and
``top_p``, as OpenAI's o-series and gpt-5 answer); thinking shown in ``reasoning_content``
(``Reply.reasoning``) or inline (``with_thinking``); streamed answers (``"stream": true``:
server-sent events, ``Reply.chunks`` pieces ``Reply.chunk_delay`` seconds apart, usage last
when ``stream_options.include_usage`` asks); slow ones (``Reply.delay``).
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
    reasoning: str | None = None  # sent as the message's reasoning_content
    error_fields: dict[str, str] = field(default_factory=dict)  # beside an error's message
    chunks: int = 3  # pieces of a streamed answer
    chunk_delay: float = 0.0  # seconds between streamed pieces


def error(status: int, message: str = "scripted fault", **headers: str) -> Reply:
    return Reply(status=status, content=message, headers=dict(headers))


GARBAGE = Reply(raw=b"<html>502 bad gateway, not JSON at all")

# What a reasoning model refuses, and how OpenAI says so.
REASONING_REFUSALS = {"max_tokens": "parameter", "temperature": "value", "top_p": "value"}


def refusal(name: str, value: Any, kind: str = "parameter") -> Reply:
    """HTTP 400 for a parameter the model does not take. ``parameter`` and ``value``: as
    OpenAI (``param`` and ``code`` beside the message); ``plain``: a message only, naming
    the parameter without quotes, as some other servers do."""
    if kind == "plain":
        return Reply(status=400, content=f"{name} is not supported by this model")
    if kind == "value":
        message = (
            f"Unsupported value: '{name}' does not support {value} with this model. Only the "
            "default (1) value is supported."
        )
    else:
        message = f"Unsupported parameter: '{name}' is not supported with this model."
        if name == "max_tokens":
            message += " Use 'max_completion_tokens' instead."
    code = "unsupported_value" if kind == "value" else "unsupported_parameter"
    fields = {"param": name, "code": code, "type": "invalid_request_error"}
    return Reply(status=400, content=message, error_fields=fields)


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

    def __init__(
        self,
        handler: Handler | None = None,
        model: str = MODEL,
        refuse: dict[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.handler: Handler = handler or _default_handler
        self.model = model
        self.api_key = api_key  # when set, a chat request with another key gets HTTP 401
        # parameter -> how it is refused (see ``refusal``): any request naming it gets a 400
        self.refuse = dict(refuse or {})
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
            given = headers.get("authorization", "").removeprefix("Bearer ")
            if self.api_key is not None and given != self.api_key:
                return Reply(
                    status=401,
                    content=f"Incorrect API key provided: {given}.",
                    error_fields={"code": "invalid_api_key", "type": "invalid_request_error"},
                )
            refused = next((name for name in self.refuse if name in body), None)
            if refused is not None:
                return refusal(refused, body[refused], self.refuse[refused])
            reply = self._faults.pop(number, None)
            if reply is None and self._queue:
                reply = self._queue.pop(0)
        if reply is None:
            reply = self.handler(body)
        return Reply(content=reply) if isinstance(reply, str) else reply

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        choices = [{"index": 0, "message": message, "finish_reason": reply.finish_reason}]
        return {
            "id": f"chatcmpl-{self._chat_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [] if reply.empty_choices else choices,
            "usage": self._usage(body, reply),
        }

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, int]:
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        prompt = max(1, prompt_chars // 4)
        completion = max(1, (len(reply.content) + len(reply.reasoning or "")) // 4)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _stream_events(self, body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
        """The chunks of a streamed answer: thinking deltas, content deltas, the finish,
        and the usage when the request asks for it."""
        base = {
            "id": f"chatcmpl-{self._chat_count}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {**base, "choices": [] if reply.empty_choices else [choice]}

        events = [chunk({"role": "assistant", "content": ""})]
        for name, text in (
            ("reasoning_content", reply.reasoning or ""),
            ("content", reply.content),
        ):
            n = max(1, reply.chunks)
            size = -(-len(text) // n) or 1
            events += [chunk({name: text[i : i + size]}) for i in range(0, len(text), size)]
        events.append(chunk({}, reply.finish_reason))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": self._usage(body, reply)})
        return events


def _make_handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as separate writes; with Nagle on, the body waits for the
        # client's delayed ACK (~40 ms) on a kept-alive connection. Real servers (uvicorn,
        # vLLM) set TCP_NODELAY too.
        disable_nagle_algorithm = True

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
                error = {"message": reply.content, "type": "scripted", **reply.error_fields}
                self._send(reply.status, json.dumps({"error": error}).encode(), reply.headers)
            elif body.get("stream"):
                self._stream(server._stream_events(body, reply), reply.chunk_delay)
            else:
                self._send(200, json.dumps(server._completion(body, reply)).encode())

        def _stream(self, events: list[dict[str, Any]], delay: float) -> None:
            """Server-sent events in chunked transfer encoding, ``delay`` s apart."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            datas = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
            with contextlib.suppress(OSError):
                for i, data in enumerate([*datas, b"data: [DONE]\n\n"]):
                    if i and delay:
                        time.sleep(delay)
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

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


def with_thinking(handler: Handler, thought: str, style: str = "tag") -> Handler:
    """``handler``'s answers as a reasoning model shows them: after a ``<think>`` block
    (``tag``), after thinking whose ``<think>`` the chat template opened (``open``: only the
    closing tag), or with the thinking in ``reasoning_content`` (``field``)."""

    def handle(request: dict[str, Any]) -> Reply:
        reply = handler(request)
        reply = Reply(content=reply) if isinstance(reply, str) else reply
        if reply.status != 200 or reply.raw is not None:
            return reply
        if style == "field":
            reply.reasoning = thought
        elif style == "open":
            reply.content = f"{thought}\n</think>\n\n{reply.content}"
        else:
            reply.content = f"<think>\n{thought}\n</think>\n\n{reply.content}"
        return reply

    return handle


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
