"""One chat call to an OpenAI-compatible endpoint, made robust and accounted for.

The SDK's own retries are off (``max_retries=0``) so that every attempt - including
the failed ones - is written to ``llm_calls`` with its reason, and so that backoff,
jitter and ``Retry-After`` are ours to control. Timeouts, 429, 5xx, dropped
connections and empty or malformed bodies are retried a bounded number of times, then
an ``AgentError`` carries the reason to the loop, which fails only that node.

A truncated completion (``finish_reason == "length"``) is *returned*, not retried: the
caller knows whether a cut-off text is usable and what to tell the model about it.

Real models differ in what they accept. A reasoning model refuses ``max_tokens`` (it wants
``max_completion_tokens``) and often ``temperature``; a refused parameter is learned from
the 400 that names it, said once, and left out (or renamed) for the rest of the run, for
every role calling that model (``Learned``). A failure every call would meet again - a
refused key, no such model, a parameter that cannot be left out - is an ``EndpointError``,
which the loop does not count as a finished step and stops the run on after a few in a row.
A model's thinking (``reasoning_content``, a leading ``<think>`` block) is kept in the call
record but never in ``Completion.text``, the only text the agents parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.agents.base import AgentError, EndpointError
from engine.agents.llm.settings import ROLES, LLMSettings
from engine.agents.llm.thinking import split_thinking
from engine.text import one_line

if TYPE_CHECKING:
    import openai
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429}
# Statuses that every later call meets again, whatever the prompt: the key, the access, the
# model. (Other 4xx, e.g. a prompt over the context length, fail only their node.)
PERSISTENT_STATUS = {401, 403, 404}
# Parameters a model may refuse that a request can do without (said once, then left out).
DROPPABLE = ("temperature", "top_p", "seed", "reasoning_effort", "stream_options", "stream")
TOKEN_NAMES = ("max_tokens", "max_completion_tokens")
MAX_ADAPTATIONS = 8  # refusals learned within one call before it gives up
# A secret shorter than this is only redacted as a whole word: a key "x" must not turn
# 'max_tokens' into 'ma[redacted]_tokens'. Longer ones are redacted wherever they occur.
SHORT_SECRET = 8
_REFUSAL = re.compile(
    r"unsupported|not supported|does not support|unrecognized|unknown (parameter|field|argument)"
    r"|not permitted|not allowed",
    re.IGNORECASE,
)


@dataclass
class Completion:
    """The text of one successful call and what it cost."""

    text: str  # the answer, without the model's thinking: what agents may parse
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency: float
    reasoning: str = ""  # the model's thinking, for the record only

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class Learned:
    """What the calls to one (endpoint, model) taught the run, shared by every role on it.

    dropped: parameters the model refused, left out from now on; token_name: how the
    output token limit is named with ``token_parameter: auto`` ("" until a refusal says:
    then max_completion_tokens, or "-" when the model refused both). Until one answer
    that is not a refusal came back (``settled``), requests to the model take turns
    (``gate``), so that concurrent first calls do not all meet the same refusal: one
    refused call per parameter per run.
    """

    dropped: set[str] = field(default_factory=set)
    token_name: str = ""
    settled: bool = False
    gate: asyncio.Lock = field(default_factory=asyncio.Lock)


class CallRecorder:
    """Writes calls to the run's ``llm_calls`` table, with secrets blanked out.

    Agents are built (and their configuration checked) before a new run's database
    exists, so the store is attached later; calls made before that are kept and flushed.
    It is the one object every LLM client of a run shares, so it also keeps what the run
    learned about each model (``learned``) and each role's failures in a row (``streak``).
    ``say``: where a line for the person running (the console) goes, if anywhere.
    """

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._store: Any = None
        self._pending: list[dict[str, Any]] = []
        self._secrets: list[str] = []
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets or []:
            self.add_secret(secret)
        self._learned: dict[tuple[str, str], Learned] = {}
        self._streaks: dict[str, int] = {}
        self.say: Callable[[str], None] | None = None

    def add_secret(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)
            # One pass, longest first: a secret holding another is redacted whole, and the
            # text put in is never searched again.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(_secret_pattern(s) for s in ordered))

    def redact(self, text: str) -> str:
        """``text`` with every whole occurrence of a secret replaced (see SHORT_SECRET)."""
        return self._pattern.sub("[redacted]", text) if self._pattern is not None else text

    def learned(self, base_url: str, model: str) -> Learned:
        return self._learned.setdefault((base_url, model), Learned())

    def streak(self, role: str, failed: bool) -> int:
        """Count one call of ``role``: its persistent failures in a row (0 after a success)."""
        self._streaks[role] = self._streaks.get(role, 0) + 1 if failed else 0
        return self._streaks[role]

    def attach(self, store: Any) -> None:
        self._store = store
        for row in self._pending:
            store.add_llm_call(**row)
        self._pending.clear()

    def record(self, **fields: Any) -> None:
        for key in ("prompt", "response", "error"):
            if isinstance(fields.get(key), str):
                fields[key] = self.redact(fields[key])
        if self._store is None:
            self._pending.append(fields)
        else:
            self._store.add_llm_call(**fields)

    def event(self, message: str, node_id: int | None) -> None:
        if self._store is not None:
            self._store.add_event("llm", self.redact(message), node_id)

    def note(self, message: str, node_id: int | None) -> None:
        """Something the person running should read once: an event, the log, the console."""
        message = self.redact(message)
        log.info("%s", message)  # info: never on stderr through logging's last resort
        self.event(message, node_id)
        if self.say is not None:
            self.say(message)


def _secret_pattern(secret: str) -> str:
    escaped = re.escape(secret)
    if len(secret) >= SHORT_SECRET:
        return escaped
    return rf"(?<![\w-]){escaped}(?![\w-])"


class _Retry(Exception):
    """A failed attempt worth repeating; ``wait`` is a server-given delay, if any."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


class _Adapted(Exception):
    """The model refused a parameter that the next request leaves out or renames."""


@dataclass
class _Answer:
    """One response, streamed or not, as the client reads it."""

    content: str = ""
    reasoning: str = ""
    finish: str = ""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    has_choices: bool = False

    @classmethod
    def of(cls, response: Any) -> _Answer:
        answer = cls(model=getattr(response, "model", None) or "")
        answer.count(getattr(response, "usage", None))
        choices = getattr(response, "choices", None) or []
        if choices:
            answer.has_choices = True
            message = getattr(choices[0], "message", None)
            answer.content = getattr(message, "content", None) or ""
            answer.reasoning = _reasoning_of(message)
            answer.finish = getattr(choices[0], "finish_reason", None) or ""
        return answer

    def add(self, chunk: Any) -> None:
        """One streamed chunk: text and thinking deltas, the finish reason, the usage."""
        self.model = self.model or getattr(chunk, "model", None) or ""
        self.count(getattr(chunk, "usage", None))
        for choice in getattr(chunk, "choices", None) or []:
            self.has_choices = True
            delta = getattr(choice, "delta", None)
            self.content += getattr(delta, "content", None) or ""
            self.reasoning += _reasoning_of(delta)
            self.finish = getattr(choice, "finish_reason", None) or self.finish

    def count(self, usage: Any) -> None:
        if usage is not None:
            self.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            self.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)


def _reasoning_of(message: Any) -> str:
    """The thinking a server returns beside the content (vLLM, DeepSeek: reasoning_content;
    OpenRouter and newer vLLM: reasoning)."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


class LLMClient:
    """Chat completions for one role (researcher, analyzer, judge, check)."""

    def __init__(
        self,
        settings: LLMSettings,
        role: str,
        recorder: CallRecorder,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.role = role
        self.recorder = recorder
        recorder.add_secret(settings.api_key)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._client: AsyncOpenAI | None = None
        self._model: str | None = settings.model

    @property
    def label(self) -> str:
        return self._model or f"the first model listed at {self.settings.base_url}"

    def _sdk(self) -> AsyncOpenAI:
        # Created lazily, inside the event loop that will use its connections.
        if self._client is None:
            self._client = _openai().AsyncOpenAI(
                api_key=self.settings.api_key or "no-key",
                base_url=self.settings.base_url,
                timeout=self.settings.timeout,
                max_retries=0,
            )
        return self._client

    async def model(self) -> str:
        """The configured model, else the first one the endpoint lists (e.g. one vLLM model)."""
        if self._model is None:
            try:
                listed = await self._sdk().models.list()
                names = [m.id for m in listed.data]
            except Exception as exc:  # noqa: BLE001 - reported as a one-line reason
                reason = self.recorder.redact(_classify(exc)[0])
                message = f"no model configured and listing models failed: {reason}"
                status = getattr(exc, "status_code", None)
                if status in PERSISTENT_STATUS:
                    hint = self._hint(status, "the first model listed")
                    repeated = self.recorder.streak(self.role, failed=True)
                    raise EndpointError(f"{message}; {hint}", self.role, repeated) from None
                raise AgentError(message) from None
            if not names:
                raise AgentError("no model configured and the endpoint lists none")
            self._model = names[0]
        return self._model

    async def complete(
        self, messages: list[dict[str, str]], node_id: int | None = None
    ) -> Completion:
        """One completion, retried on transient failures; AgentError when they persist,
        EndpointError when every later call would fail the same way."""
        s = self.settings
        model = await self.model()
        learned = self.recorder.learned(s.base_url, model)
        prompt_text = transcript(messages)
        attempts = s.retries + 1
        attempt = adaptations = 0
        reason = ""
        while True:
            started = time.monotonic()
            try:
                answer = await self._ask(learned, model, messages, node_id)
                done = self._accept(answer, model, prompt_text, node_id, started)
                self.recorder.streak(self.role, failed=False)
                return done
            except asyncio.CancelledError:
                raise
            except _Adapted as exc:  # the next request does without what was refused
                self._record(node_id, model, prompt_text, started, error=str(exc))
                adaptations += 1
                if adaptations <= MAX_ADAPTATIONS:
                    continue
                reason, server_wait = f"{exc} (and {MAX_ADAPTATIONS} refusals before it)", None
            except EndpointError as exc:  # a refused parameter the request cannot do without
                reason = self.recorder.redact(str(exc))
                self._record(node_id, model, prompt_text, started, error=reason)
                repeated = self.recorder.streak(self.role, failed=True)
                message = f"{self.role} call failed: {reason}"
                raise EndpointError(message, self.role, repeated) from None
            except _Retry as exc:
                reason, server_wait = str(exc), exc.wait
            except Exception as exc:  # noqa: BLE001 - classified below
                reason, server_wait, fatal = _classify(exc)
                if isinstance(exc, _openai().APITimeoutError):
                    reason = self._timed_out(model, learned)
                reason = self.recorder.redact(reason)
                self._record(node_id, model, prompt_text, started, error=reason)
                status = getattr(exc, "status_code", None)
                if fatal and status in PERSISTENT_STATUS:
                    repeated = self.recorder.streak(self.role, failed=True)
                    hint = self._hint(status, model)
                    raise EndpointError(
                        f"{self.role} call failed: {reason}; {hint}", self.role, repeated
                    ) from None
                if fatal:
                    raise AgentError(f"{self.role} call failed: {reason}") from None
            attempt += 1
            if attempt >= attempts:
                break
            wait = self._backoff(attempt - 1, server_wait)
            self.recorder.event(
                f"{self.role} call failed (attempt {attempt}/{attempts}): {reason}; "
                f"retrying in {wait:.2f}s",
                node_id,
            )
            await self._sleep(wait)
        raise AgentError(f"{self.role} call failed after {attempts} attempts: {reason}")

    async def _ask(
        self, learned: Learned, model: str, messages: list[dict[str, str]], node_id: int | None
    ) -> _Answer:
        """Send one request as the run has learned to send it; learn from a refusal."""
        async with self._turn(learned):
            kwargs = self._request(learned, model, messages)
            try:
                answer = await self._send(kwargs)
            except Exception as exc:
                refused = _refused_parameter(exc, kwargs)
                if refused is None:
                    learned.settled = learned.settled or isinstance(exc, _openai().APIStatusError)
                    raise
                self._learn(learned, model, kwargs, *refused, node_id)  # raises
            learned.settled = True
            return answer

    @contextlib.asynccontextmanager
    async def _turn(self, learned: Learned) -> AsyncIterator[None]:
        if learned.settled:
            yield
            return
        async with learned.gate:
            yield

    def _request(
        self, learned: Learned, model: str, messages: list[dict[str, str]]
    ) -> dict[str, Any]:
        """The request's arguments: the settings, less what the model refused."""
        s = self.settings
        kwargs: dict[str, Any] = {"model": model, "messages": messages}
        for key in ("temperature", "top_p", "seed", "reasoning_effort"):
            if getattr(s, key) is not None and key not in learned.dropped:
                kwargs[key] = getattr(s, key)
        if s.max_tokens is not None:
            name = s.token_parameter
            if name == "auto":
                name = learned.token_name or "max_tokens"
            if name in TOKEN_NAMES:
                kwargs[name] = s.max_tokens
        if s.stream and "stream" not in learned.dropped:
            kwargs["stream"] = True
            if "stream_options" not in learned.dropped:
                kwargs["stream_options"] = {"include_usage": True}  # tokens for the budget
        extra = {k: v for k, v in s.extra_body.items() if k not in learned.dropped}
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    async def _send(self, kwargs: dict[str, Any]) -> _Answer:
        if not kwargs.get("stream"):
            # The SDK's generic POST (its documented way to any endpoint): the same client,
            # connections, timeout, headers and error classes as ``chat.completions.create``,
            # without its recursive type transform of a request that is plain JSON already
            # (1.0-1.5 ms of CPU per call, as much again as the rest of the call).
            body = {k: v for k, v in kwargs.items() if k != "extra_body"}
            body.update(kwargs.get("extra_body") or {})
            completion = _openai().types.chat.ChatCompletion
            answer = await self._sdk().post("/chat/completions", body=body, cast_to=completion)
            return _Answer.of(answer)
        stream = await self._sdk().chat.completions.create(**kwargs)
        answer = _Answer()
        try:
            async for chunk in stream:
                answer.add(chunk)
        finally:
            await stream.close()
        return answer

    def _learn(
        self,
        learned: Learned,
        model: str,
        kwargs: dict[str, Any],
        name: str,
        message: str,
        node_id: int | None,
    ) -> None:
        """Leave ``name`` out (or rename it) from now on, said once; raises _Adapted, or
        EndpointError when the request cannot do without it."""
        s = self.settings
        refusal = f"HTTP 400: {one_line(message)[:300]}"
        if name in TOKEN_NAMES and s.token_parameter != "auto":
            other = "max_completion_tokens" if name == "max_tokens" else "max_tokens"
            raise EndpointError(
                f"model {model} refuses {name!r} ({refusal}); set api.token_parameter: auto "
                f"(or {other})"
            )
        if name in TOKEN_NAMES:
            known = bool(learned.token_name) if name == "max_tokens" else learned.token_name == "-"
            if known:  # another call learned it meanwhile
                raise _Adapted(refusal)
            if name == "max_tokens":
                learned.token_name = "max_completion_tokens"
                change = "sending max_completion_tokens instead"
                upfront = "api.token_parameter: max_completion_tokens"
            else:
                learned.token_name = "-"
                change = "sending no output token limit"
                upfront = "api.max_tokens: null"
            self.recorder.note(
                f"{self.role}: model {model} refuses {name!r}: {change} from now on ({upfront} "
                f"says so upfront; {refusal})",
                node_id,
            )
            raise _Adapted(refusal)
        if name in DROPPABLE or name in s.extra_body:
            if name not in learned.dropped:
                learned.dropped.add(name)
                if name == "stream":
                    learned.dropped.add("stream_options")
                setting = f"api.extra_body.{name}" if name in s.extra_body else f"api.{name}"
                self.recorder.note(
                    f"{self.role}: model {model} refuses {name!r}: sent without it from now "
                    f"on (leave {setting} out of the config to skip this refusal; {refusal})",
                    node_id,
                )
            raise _Adapted(refusal)
        what = f"{name!r}" if name else "a parameter of the request"
        raise EndpointError(f"model {model} refuses {what}, which cannot be left out ({refusal})")

    def _timed_out(self, model: str, learned: Learned) -> str:
        """The reason for a timeout: whose call, how long, and which setting changes it."""
        s = self.settings
        streamed = s.stream and "stream" not in learned.dropped
        raise_it = "api.timeout raises it"
        if self.role in ROLES:
            raise_it = f"api.timeout (or api.roles.{self.role}.timeout) raises it"
        if streamed:
            return f"timed out: no new token from {model} for {s.timeout:g}s ({raise_it})"
        return (
            f"timed out: no answer from {model} within {s.timeout:g}s ({raise_it}; "
            "api.stream: true waits only between tokens, for long generations)"
        )

    def _hint(self, status: int, model: str) -> str:
        """What to check for a failure that every call would meet again."""
        if status == 401:
            return "the endpoint refuses the API key: check api.api_key or api.api_key_env"
        if status == 403:
            return f"the API key may not use {model}: check api.model and the key's access"
        return (
            f"no model {model!r} (or no chat API) at {self.settings.base_url}: check api.model "
            "and api.base_url (asi-evolve check-llm tests them)"
        )

    def _accept(
        self, answer: _Answer, model: str, prompt: str, node_id: int | None, started: float
    ) -> Completion:
        """Check one response; record it; raise _Retry when it holds no usable text."""
        served = answer.model or model
        thinking, text = split_thinking(answer.content)
        reasoning = "\n\n".join(t for t in (answer.reasoning, thinking) if t)
        finish = answer.finish
        problem = ""
        if not answer.has_choices:
            problem = "malformed response: no choices"
        elif not text.strip():
            problem = "empty response"
            if reasoning:
                problem += " (only thinking, no answer)"
            if finish == "length":
                problem += " (cut off at the output token limit: raise api.max_tokens)"
        record = answer.content
        if answer.reasoning:  # kept in the record, in the notation of inline thinking
            record = f"<think>\n{answer.reasoning}\n</think>\n{answer.content}"
        pt, ct = answer.prompt_tokens, answer.completion_tokens
        self._record(
            node_id, served, prompt, started, pt, ct, response=record, error=problem, ok=not problem
        )
        if problem:
            raise _Retry(problem)
        return Completion(text, finish, served, pt, ct, time.monotonic() - started, reasoning)

    def _record(
        self,
        node_id: int | None,
        model: str,
        prompt: str,
        started: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        response: str = "",
        error: str = "",
        ok: bool = False,
    ) -> None:
        self.recorder.record(
            ts=time.time(),
            node_id=node_id,
            role=self.role,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency=round(time.monotonic() - started, 4),
            cost_usd=self.settings.cost(model, prompt_tokens, completion_tokens),
            ok=int(ok),
            error=error,
            prompt=prompt,
            response=response,
        )

    def _backoff(self, attempt: int, server_wait: float | None) -> float:
        s = self.settings
        if server_wait is not None:  # Retry-After: the server knows best (within reason)
            return min(max(server_wait, 0.0), s.retry_after_max)
        wait = min(s.backoff_max, s.backoff_base * 2**attempt)
        return wait * (0.5 + 0.5 * self._rng.random())

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _openai() -> Any:
    """The SDK, imported on first use: its import takes most of a second, which a run pays
    while its initial program is evaluated (``warm_up``), not before."""
    import openai

    return openai


async def warm_up() -> str:
    """Import the SDK in a thread (the engine runs this beside the initial evaluation)."""
    await asyncio.to_thread(_openai)
    return ""


def _classify(exc: Exception) -> tuple[str, float | None, bool]:
    """(reason, server-given wait, fatal?) for an exception raised by the SDK."""
    if isinstance(exc, _openai().APITimeoutError):
        return "timed out", None, False
    if isinstance(exc, _openai().APIConnectionError):
        return f"connection error: {one_line(exc.__cause__ or exc)}", None, False
    if isinstance(exc, _openai().APIStatusError):
        status = exc.status_code
        message = _status_message(exc)
        reason = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        fatal = status < 500 and status not in RETRYABLE_STATUS
        return reason, retry_after(exc.response.headers), fatal
    if isinstance(exc, _openai().APIResponseValidationError | ValueError):
        return f"malformed response: {one_line(exc)}", None, False
    if isinstance(exc, _openai().APIError):
        return one_line(exc), None, False
    return f"{type(exc).__name__}: {one_line(exc)}", None, True


def _status_message(exc: openai.APIStatusError) -> str:
    message = _error_body(exc).get("message")
    return one_line(message)[:300] if message else ""


def _error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _refused_parameter(exc: Exception, kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """(parameter, message) when a 400 says the model refuses a parameter of the request.

    OpenAI names it in ``error.param`` with ``code: unsupported_parameter`` or
    ``unsupported_value``; other servers only say so in the message ("temperature is not
    supported"), so a parameter the request sent is looked for there. The parameter is ""
    when the error says a refusal but names nothing the request sent.
    """
    if not isinstance(exc, _openai().APIStatusError) or exc.status_code not in (400, 422):
        return None
    body = _error_body(exc)
    message = str(body.get("message") or "")
    code = str(body.get("code") or "")
    coded = code in ("unsupported_parameter", "unsupported_value")
    if not coded and not _REFUSAL.search(message):
        return None
    sent = set(kwargs) | set(kwargs.get("extra_body") or {})
    optional = sent - {"model", "messages", "extra_body"}
    named = re.match(r"[A-Za-z_]\w*", str(body.get("param") or ""))
    if named and named.group(0) in sent:
        return named.group(0), message
    for quoted in re.findall(r"['\"`]([A-Za-z_]\w*)", message):
        if quoted in sent:
            return quoted, message
    for name in sorted(optional, key=len, reverse=True):
        if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", message):
            return name, message
    return ("", message) if coded else None


def retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
        value = headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def transcript(messages: list[dict[str, str]]) -> str:
    """The messages as readable text, for ``llm_calls.prompt``."""
    return "\n\n".join(f"### {m['role']}\n{m['content']}" for m in messages)
