"""One chat call to an OpenAI-compatible endpoint, made robust and accounted for.

The SDK's own retries are off (``max_retries=0``) so that every attempt - including
the failed ones - is written to ``llm_calls`` with its reason, and so that backoff,
jitter and ``Retry-After`` are ours to control. Timeouts, 429, 5xx, dropped
connections and empty or malformed bodies are retried a bounded number of times, then
an ``AgentError`` carries the reason to the loop, which fails only that node.

A truncated completion (``finish_reason == "length"``) is *returned*, not retried: the
caller knows whether a cut-off text is usable and what to tell the model about it.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
from openai import AsyncOpenAI

from engine.agents.base import AgentError
from engine.agents.llm.settings import LLMSettings
from engine.text import one_line

RETRYABLE_STATUS = {408, 409, 425, 429}


@dataclass
class Completion:
    """The text of one successful call and what it cost."""

    text: str
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency: float

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class CallRecorder:
    """Writes calls to the run's ``llm_calls`` table, with secrets blanked out.

    Agents are built (and their configuration checked) before a new run's database
    exists, so the store is attached later; calls made before that are kept and flushed.
    """

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._store: Any = None
        self._pending: list[dict[str, Any]] = []
        self._secrets = [s for s in (secrets or []) if s]

    def add_secret(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

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


class _Retry(Exception):
    """A failed attempt worth repeating; ``wait`` is a server-given delay, if any."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


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
            self._client = AsyncOpenAI(
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
                raise AgentError(f"no model configured and listing models failed: {exc}") from None
            if not names:
                raise AgentError("no model configured and the endpoint lists none")
            self._model = names[0]
        return self._model

    async def complete(
        self, messages: list[dict[str, str]], node_id: int | None = None
    ) -> Completion:
        """One completion, retried on transient failures; AgentError when they persist."""
        s = self.settings
        model = await self.model()
        kwargs: dict[str, Any] = {"model": model, "messages": messages}
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            if getattr(s, key) is not None:
                kwargs[key] = getattr(s, key)
        if s.extra_body:
            kwargs["extra_body"] = s.extra_body
        prompt_text = transcript(messages)
        attempts = s.retries + 1
        reason = ""
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                response = await self._sdk().chat.completions.create(**kwargs)
                return self._accept(response, model, prompt_text, node_id, started)
            except asyncio.CancelledError:
                raise
            except _Retry as exc:
                reason, server_wait = str(exc), exc.wait
            except Exception as exc:  # noqa: BLE001 - classified below
                reason, server_wait, fatal = _classify(exc)
                reason = self.recorder.redact(reason)
                self._record(node_id, model, prompt_text, started, error=reason)
                if fatal:
                    raise AgentError(f"{self.role} call failed: {reason}") from None
            if attempt + 1 >= attempts:
                break
            wait = self._backoff(attempt, server_wait)
            self.recorder.event(
                f"{self.role} call failed (attempt {attempt + 1}/{attempts}): {reason}; "
                f"retrying in {wait:.2f}s",
                node_id,
            )
            await self._sleep(wait)
        raise AgentError(f"{self.role} call failed after {attempts} attempts: {reason}")

    def _accept(
        self, response: Any, model: str, prompt: str, node_id: int | None, started: float
    ) -> Completion:
        """Check one response; record it; raise _Retry when it holds no usable text."""
        usage = getattr(response, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        served = getattr(response, "model", None) or model
        choices = getattr(response, "choices", None) or []
        text = ""
        finish = ""
        if choices:
            message = getattr(choices[0], "message", None)
            text = getattr(message, "content", None) or ""
            finish = getattr(choices[0], "finish_reason", None) or ""
        problem = ""
        if not choices:
            problem = "malformed response: no choices"
        elif not text.strip():
            problem = "empty response" + (" (cut off at max_tokens)" if finish == "length" else "")
        self._record(
            node_id, served, prompt, started, pt, ct, response=text, error=problem, ok=not problem
        )
        if problem:
            raise _Retry(problem)
        return Completion(text, finish, served, pt, ct, time.monotonic() - started)

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


def _classify(exc: Exception) -> tuple[str, float | None, bool]:
    """(reason, server-given wait, fatal?) for an exception raised by the SDK."""
    if isinstance(exc, openai.APITimeoutError):
        return "timed out", None, False
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {one_line(exc.__cause__ or exc)}", None, False
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _status_message(exc)
        reason = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        fatal = status < 500 and status not in RETRYABLE_STATUS
        return reason, retry_after(exc.response.headers), fatal
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return f"malformed response: {one_line(exc)}", None, False
    if isinstance(exc, openai.APIError):
        return one_line(exc), None, False
    return f"{type(exc).__name__}: {one_line(exc)}", None, True


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return one_line(inner["message"])[:300]
    return ""


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
