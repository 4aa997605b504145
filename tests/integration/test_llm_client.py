"""The LLM client against the scripted server: retries, Retry-After, accounting, secrets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from scripted_server import GARBAGE, MODEL, Reply, ScriptedServer, error

from engine.agents.base import AgentError, AgentSetupError
from engine.agents.llm.client import CallRecorder, LLMClient, retry_after
from engine.agents.llm.settings import LLMSettings, redact_config, resolve_settings

KEY = "sk-test-secret"
MESSAGES = [{"role": "user", "content": "hello"}]


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.events: list[str] = []

    def add_llm_call(self, **fields: Any) -> None:
        self.calls.append(fields)

    def add_event(self, kind: str, message: str, node_id: int | None = None) -> None:
        self.events.append(message)


def make_client(
    server: ScriptedServer, **overrides: Any
) -> tuple[LLMClient, FakeStore, list[float]]:
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": KEY,
        "model": MODEL,
        "retries": 3,
        "backoff_base": 0.01,
        "timeout": 5.0,
    }
    values.update(overrides)
    store, sleeps = FakeStore(), []
    recorder = CallRecorder()
    recorder.attach(store)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return LLMClient(LLMSettings(**values), "researcher", recorder, sleep=sleep), store, sleeps


def complete(client: LLMClient, node_id: int | None = 7):  # noqa: ANN201 - Completion
    async def go():  # noqa: ANN202
        try:
            return await client.complete(MESSAGES, node_id=node_id)
        finally:
            await client.close()

    return asyncio.run(go())


def test_500_then_ok_is_retried_and_every_attempt_is_recorded() -> None:
    with ScriptedServer() as server:
        server.push(error(500), "fine")
        client, store, sleeps = make_client(server)
        done = complete(client)
    assert done.text == "fine" and done.prompt_tokens > 0 and done.completion_tokens > 0
    assert [c["ok"] for c in store.calls] == [0, 1]
    assert "HTTP 500" in store.calls[0]["error"]
    assert all(c["node_id"] == 7 and c["role"] == "researcher" for c in store.calls)
    assert store.calls[1]["response"] == "fine" and "hello" in store.calls[1]["prompt"]
    assert len(sleeps) == 1 and 0.005 <= sleeps[0] <= 0.01  # base * 2**0 with jitter
    assert any("attempt 1/4" in e and "HTTP 500" in e for e in store.events)
    # The key goes to the server, and nowhere else.
    assert server.chat_requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_429_honours_retry_after() -> None:
    with ScriptedServer() as server:
        server.push(error(429, "slow down", **{"Retry-After": "1"}), "ok")
        client, store, sleeps = make_client(server)
        assert complete(client).text == "ok"
    assert sleeps == [1.0]
    assert "HTTP 429: slow down" in store.calls[0]["error"]


@pytest.mark.parametrize(
    "fault, reason",
    [
        (GARBAGE, "malformed response"),
        (Reply(empty_choices=True), "no choices"),
        (Reply(content=""), "empty response"),
        (Reply(drop_connection=True), "connection error"),
        (Reply(content="late", delay=1.0), "timed out"),
    ],
)
def test_transient_faults_are_retried(fault: Reply, reason: str) -> None:
    with ScriptedServer() as server:
        server.push(fault, "recovered")
        client, store, _ = make_client(server, timeout=0.4)
        assert complete(client).text == "recovered"
    assert reason in store.calls[0]["error"] and store.calls[0]["ok"] == 0
    assert store.calls[-1]["ok"] == 1


def test_retries_are_bounded_then_agent_error() -> None:
    with ScriptedServer() as server:
        server.push(*[error(503)] * 5)
        client, store, sleeps = make_client(server, retries=2)
        with pytest.raises(AgentError, match="after 3 attempts: HTTP 503"):
            complete(client)
    assert len(store.calls) == 3 and len(sleeps) == 2
    assert sleeps[1] > sleeps[0] * 0.9  # exponential (with jitter in [0.5, 1])


def test_client_errors_are_not_retried() -> None:
    with ScriptedServer() as server:
        server.push(error(401, f"bad key {KEY}"), "never")
        client, store, sleeps = make_client(server)
        with pytest.raises(AgentError, match="HTTP 401") as err:
            complete(client)
    assert len(store.calls) == 1 and not sleeps
    # A server that echoes the key does not get it into the database or the error.
    assert KEY not in store.calls[0]["error"] and "[redacted]" in store.calls[0]["error"]
    assert KEY not in str(err.value)  # the node's error is stored in the run database


def test_truncated_output_is_returned_for_the_caller_to_handle() -> None:
    with ScriptedServer() as server:
        server.push(Reply(content="half a progr", finish_reason="length"))
        client, store, _ = make_client(server)
        done = complete(client)
    assert done.truncated and done.text == "half a progr" and store.calls[0]["ok"] == 1


def test_cost_from_prices_and_model_discovery() -> None:
    prices = {MODEL: {"prompt": 1.0, "completion": 2.0}}
    with ScriptedServer() as server:
        client, store, _ = make_client(server, model=None, prices=prices)
        done = complete(client)
        assert any(r.path.endswith("/models") for r in server.requests)
    assert done.model == MODEL
    call = store.calls[0]
    expected = (call["prompt_tokens"] * 1.0 + call["completion_tokens"] * 2.0) / 1e6
    assert call["cost_usd"] == pytest.approx(expected) and call["cost_usd"] > 0
    settings = LLMSettings(base_url="x", prices={"gpt-4o": {"prompt": 2.5, "completion": 10}})
    assert settings.cost("gpt-4o-2024-08-06", 1_000_000, 0) == 2.5
    assert settings.cost("unknown", 1000, 1000) == 0.0


def test_calls_before_the_store_exists_are_kept() -> None:
    recorder = CallRecorder([KEY])
    recorder.record(role="x", prompt=f"key {KEY}", response="", error="")
    store = FakeStore()
    recorder.attach(store)
    assert store.calls == [{"role": "x", "prompt": "key [redacted]", "response": "", "error": ""}]


def test_retry_after_formats() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "1500"}) == 1.5
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after({}) is None


# ------------------------------------------------------------------ settings
def test_settings_from_config_env_and_roles() -> None:
    env = {"OPENAI_BASE_URL": "http://env/v1", "OPENAI_API_KEY": "env-key"}
    env["ASI_EVOLVE_MODEL"] = "env-model"
    s = resolve_settings({}, "researcher", env)
    assert (s.base_url, s.api_key, s.model) == ("http://env/v1", "env-key", "env-model")
    api = {
        "base_url": "http://cfg/v1",
        "model": "big",
        "temperature": 1,
        "roles": {"analyzer": {"model": "small", "api_key_env": "CHEAP_KEY"}},
    }
    env["CHEAP_KEY"] = "cheap"
    r, a = resolve_settings(api, "researcher", env), resolve_settings(api, "analyzer", env)
    assert (r.base_url, r.model, r.temperature, r.api_key) == (
        "http://cfg/v1",
        "big",
        1.0,
        "env-key",
    )
    assert (a.model, a.api_key) == ("small", "cheap")
    assert "env-key" not in repr(r)


@pytest.mark.parametrize(
    "api, env, message",
    [
        ({}, {}, "no LLM endpoint configured"),
        ({"base_url": "u", "modle": "x"}, {}, "unknown setting 'modle'"),
        ({"base_url": "u", "api_key_env": "NOPE"}, {}, "NOPE, which is not set"),
        ({"base_url": "u", "retries": "3"}, {}, "retries must be an integer"),
        ({"base_url": "u", "roles": {"coder": {}}}, {}, "unknown role 'coder'"),
        ({"base_url": "u", "prices": {"m": {"input": 1}}}, {}, "api.prices.m"),
    ],
)
def test_settings_errors(api: dict, env: dict, message: str) -> None:
    with pytest.raises(AgentSetupError, match=message):
        resolve_settings(api, "researcher", env)


def test_redact_config_strips_keys() -> None:
    config = {"api": {"api_key": KEY, "model": "m", "roles": {"judge": {"api_key": KEY}}}}
    redacted = redact_config(config)
    assert KEY not in repr(redacted) and redacted["api"]["model"] == "m"
    assert config["api"]["api_key"] == KEY  # the original is untouched


@pytest.mark.parametrize(
    "bad",
    [
        {"timeout": float("nan")},
        {"timeout": 0},
        {"max_tokens": -5},
        {"max_tokens": 0},
        {"temperature": float("inf")},
        {"top_p": 1.5},
        {"retries": -1},
        {"backoff_base": float("nan")},
    ],
)
def test_out_of_range_settings_are_one_line_before_any_call(bad: dict) -> None:
    """A NaN timeout, a negative max_tokens ... would fail every call (or never time out)
    hours into a run: refused when the settings are read, naming the setting."""
    from engine.agents.base import AgentSetupError
    from engine.agents.llm.settings import resolve_settings

    name = next(iter(bad))
    with pytest.raises(AgentSetupError, match=rf"api\.{name} must be between"):
        resolve_settings({"base_url": "http://127.0.0.1:9/v1", **bad}, None, {})


def test_the_request_on_the_wire_is_the_one_chat_completions_create_sends() -> None:
    """The client posts through the SDK's generic ``post`` (no per-call type transform):
    path, body and headers must be those of ``chat.completions.create`` with the same
    settings, extra_body merged in as the SDK merges it."""
    import openai

    settings = {"temperature": 0.3, "seed": 11, "max_tokens": 64, "extra_body": {"top_k": 5}}
    with ScriptedServer() as server:
        client, _, _ = make_client(server, **settings)
        complete(client)

        async def direct() -> None:
            sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
            try:
                await sdk.chat.completions.create(
                    model=MODEL,
                    messages=MESSAGES,  # type: ignore[arg-type]
                    temperature=0.3,
                    seed=11,
                    max_tokens=64,
                    extra_body={"top_k": 5},
                )
            finally:
                await sdk.close()

        asyncio.run(direct())
        ours, theirs = server.chat_requests
    assert ours.path == theirs.path
    assert ours.body == theirs.body
    assert ours.body["top_k"] == 5 and ours.body["seed"] == 11
    skip = {"x-stainless-retry-count", "x-stainless-read-timeout", "content-length"}
    same = {k: v for k, v in ours.headers.items() if k.lower() not in skip}
    assert same == {k: v for k, v in theirs.headers.items() if k.lower() not in skip}
