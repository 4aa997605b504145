"""Real model endpoints (issue 24), against the scripted server and the real ``openai`` client.

A reasoning model refuses ``max_tokens`` and ``temperature``; thinking arrives inline or in
``reasoning_content``; long generations stream or time out with a line that says what to
raise; a refused key or an unknown model stops the run without spending its step budget;
and a short API key is never redacted inside words.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, make_toy_task
from scripted_server import (
    MODEL,
    REASONING_REFUSALS,
    ConstantEditor,
    Reply,
    ScriptedServer,
    agents_script,
    analysis_reply,
    error,
    with_thinking,
)
from test_llm_cli import rows
from test_llm_client import FakeStore

from engine.agents.base import AgentError, AgentSetupError, EndpointError
from engine.agents.llm.client import CallRecorder, Completion, LLMClient
from engine.agents.llm.settings import LLMSettings, resolve_settings
from engine.agents.llm.thinking import split_thinking

MESSAGES = [{"role": "user", "content": "hello"}]
LONG_KEY = "sk-proj-Zq81kLmN0pQrStUvWxYz"


def settings(server: ScriptedServer, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": "x",
        "model": MODEL,
        "retries": 2,
        "backoff_base": 0.0,
        "timeout": 5.0,
    }
    values.update(overrides)
    return LLMSettings(**values)


def recorder() -> tuple[CallRecorder, FakeStore, list[str]]:
    store, said = FakeStore(), []
    rec = CallRecorder()
    rec.attach(store)
    rec.say = said.append
    return rec, store, said


def run_calls(clients: list[LLMClient], per_client: int = 1) -> list[Completion]:
    """``per_client`` calls on every client, all at once (as the run's workers make them)."""

    async def go() -> list[Completion]:
        try:
            jobs = [c.complete(MESSAGES, node_id=1) for c in clients for _ in range(per_client)]
            return list(await asyncio.gather(*jobs))
        finally:
            for c in clients:
                await c.close()

    return asyncio.run(go())


def body_keys(server: ScriptedServer) -> list[set[str]]:
    return [set(r.body) - {"messages", "model"} for r in server.chat_requests]


# ------------------------------------------------------------ parameters
def test_reasoning_model_refusals_are_learned_once_for_the_run_and_every_role() -> None:
    with ScriptedServer(refuse=REASONING_REFUSALS) as server:
        rec, store, said = recorder()
        old_style = settings(server, temperature=0.8, max_tokens=4000)
        clients = [LLMClient(old_style, role, rec) for role in ("researcher", "analyzer")]
        done = run_calls(clients, per_client=3)
        keys = body_keys(server)
    assert [d.text for d in done] == ["OK"] * 6
    # One refused call per parameter in the whole run, though six calls were made at once.
    assert keys[:2] == [{"max_tokens", "temperature"}, {"max_completion_tokens", "temperature"}]
    assert keys[2:] == [{"max_completion_tokens"}] * 6
    assert all(r.body["max_completion_tokens"] == 4000 for r in server.chat_requests[1:])
    # Said once each (console and event), every refused attempt in llm_calls.
    assert len(said) == 2 and said == [e for e in store.events if "refuses" in e]
    assert "refuses 'max_tokens': sending max_completion_tokens instead" in said[0]
    assert "api.token_parameter: max_completion_tokens" in said[0]
    assert "refuses 'temperature': sent without it" in said[1] and "api.temperature" in said[1]
    failed = [c["error"] for c in store.calls if not c["ok"]]
    assert len(failed) == 2 and all("HTTP 400: Unsupported" in e for e in failed)


def test_token_parameter_setting_names_the_limit_upfront() -> None:
    with ScriptedServer(refuse=REASONING_REFUSALS) as server:
        rec, _, said = recorder()
        upfront = settings(server, max_tokens=100, token_parameter="max_completion_tokens")
        run_calls([LLMClient(upfront, "researcher", rec)])
        keys = body_keys(server)
    assert keys == [{"max_completion_tokens"}] and not said


def test_a_model_that_refuses_both_token_names_gets_no_limit() -> None:
    both = {"max_tokens": "parameter", "max_completion_tokens": "plain"}
    with ScriptedServer(refuse=both) as server:
        rec, _, said = recorder()
        run_calls([LLMClient(settings(server, max_tokens=100), "judge", rec)], per_client=2)
        keys = body_keys(server)
    assert keys == [{"max_tokens"}, {"max_completion_tokens"}, set(), set()]
    assert "sending no output token limit" in said[1] and "api.max_tokens: null" in said[1]


def test_a_forced_token_parameter_the_model_refuses_is_an_endpoint_error() -> None:
    with ScriptedServer(refuse=REASONING_REFUSALS) as server:
        rec, _, _ = recorder()
        forced = settings(server, max_tokens=100, token_parameter="max_tokens")
        with pytest.raises(EndpointError, match="set api.token_parameter: auto") as err:
            run_calls([LLMClient(forced, "researcher", rec)])
    assert err.value.role == "researcher" and err.value.repeated == 1
    assert len(server.chat_requests) == 1  # not retried: every call would meet it


def test_a_refusal_in_plain_words_and_an_extra_body_parameter_are_dropped() -> None:
    with ScriptedServer(refuse={"top_p": "plain", "top_k": "parameter"}) as server:
        rec, _, said = recorder()
        extra = settings(server, top_p=0.9, extra_body={"top_k": 20, "min_p": 0.1})
        run_calls([LLMClient(extra, "researcher", rec)], per_client=2)
        keys = body_keys(server)
    assert keys[0] == {"top_p", "top_k", "min_p"}
    assert keys[-2:] == [{"min_p"}, {"min_p"}] and len(keys) == 4
    assert any("'top_p'" in line for line in said)
    assert any("api.extra_body.top_k" in line for line in said)


def test_a_refused_parameter_that_cannot_be_left_out_is_an_endpoint_error() -> None:
    refusal = Reply(
        status=400,
        content="Unsupported value: 'messages[0].role' does not support 'system' with this model.",
        error_fields={"param": "messages[0].role", "code": "unsupported_value"},
    )
    with ScriptedServer() as server:
        server.push(refusal, "never")
        rec, _, _ = recorder()
        with pytest.raises(EndpointError, match="refuses 'messages', which cannot be left out"):
            run_calls([LLMClient(settings(server), "analyzer", rec)])
    assert len(server.chat_requests) == 1


def test_reasoning_effort_is_sent_only_when_set() -> None:
    with ScriptedServer() as server:
        rec, _, _ = recorder()
        run_calls([LLMClient(settings(server, reasoning_effort="high"), "researcher", rec)])
        run_calls([LLMClient(settings(server), "analyzer", rec)])
        sent = [r.body.get("reasoning_effort") for r in server.chat_requests]
    assert sent == ["high", None]
    env = {"OPENAI_BASE_URL": "http://h/v1"}
    api = {"reasoning_effort": "low", "token_parameter": "max_completion_tokens"}
    resolved = resolve_settings(api, "researcher", env)
    assert (
        resolved.reasoning_effort == "low" and resolved.token_parameter == "max_completion_tokens"
    )
    for bad, message in [
        ({"token_parameter": "max_output_tokens"}, "api.token_parameter must be one of auto"),
        ({"reasoning_effort": 3}, "reasoning_effort must be a string"),
        ({"stream": "yes"}, "stream must be a bool"),
    ]:
        with pytest.raises(AgentSetupError, match=message):
            resolve_settings(bad, "researcher", env)


# -------------------------------------------------------------- thinking
DECOY = "Maybe:\n<<<<<<< SEARCH\nX = 1.0\n=======\nX = 99.0\n>>>>>>> REPLACE\n<analysis>draft"


@pytest.mark.parametrize("style", ["tag", "open", "field"])
def test_thinking_is_kept_in_the_record_but_never_in_the_text(style: str) -> None:
    with ScriptedServer(with_thinking(lambda r: Reply("the answer"), DECOY, style)) as server:
        rec, store, _ = recorder()
        (done,) = run_calls([LLMClient(settings(server), "researcher", rec)])
    assert done.text == "the answer" and done.reasoning.strip() == DECOY
    assert DECOY in store.calls[0]["response"]


def test_streamed_thinking_and_usage() -> None:
    answer = Reply("the answer", reasoning=DECOY, chunks=4)
    with ScriptedServer(lambda r: answer) as server:
        rec, store, _ = recorder()
        (done,) = run_calls([LLMClient(settings(server, stream=True), "researcher", rec)])
        body = server.chat_requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert done.text == "the answer" and done.reasoning == DECOY
    assert done.prompt_tokens > 0 and done.completion_tokens > 0  # the budget sees them
    assert DECOY in store.calls[0]["response"]


def test_an_answer_that_is_all_thinking_is_retried_as_empty() -> None:
    with ScriptedServer() as server:
        server.push(Reply("<think>\nstill thinking when cut off", finish_reason="length"), "ok")
        rec, store, _ = recorder()
        (done,) = run_calls([LLMClient(settings(server), "researcher", rec)])
    assert done.text == "ok"
    assert "empty response (only thinking, no answer)" in store.calls[0]["error"]
    assert "raise api.max_tokens" in store.calls[0]["error"]


def test_split_thinking_takes_only_leading_blocks() -> None:
    assert split_thinking("<think>a</think>\n<think>b</think>\nanswer") == ("a\n\nb", "answer")
    assert split_thinking("  <THINK>cut off") == ("cut off", "")
    assert split_thinking("drafting</think>\n\nanswer") == ("drafting", "answer")
    code = 'text = "<think>x</think>"\n'  # a program that handles model output keeps its text
    assert split_thinking(f"<code>\n{code}</code>") == ("", f"<code>\n{code}</code>")
    assert split_thinking("plain") == ("", "plain")


# -------------------------------------------------------- long generations
def test_a_timeout_says_who_how_long_and_what_to_raise() -> None:
    with ScriptedServer(lambda r: Reply("late", delay=1.0)) as server:
        rec, _, _ = recorder()
        with pytest.raises(AgentError) as err:
            run_calls([LLMClient(settings(server, timeout=0.3, retries=1), "analyzer", rec)])
    assert str(err.value) == (
        f"analyzer call failed after 2 attempts: timed out: no answer from {MODEL} within 0.3s "
        "(api.timeout (or api.roles.analyzer.timeout) raises it; api.stream: true waits only "
        "between tokens, for long generations)"
    )


def test_a_long_streamed_generation_is_not_cut_by_the_timeout() -> None:
    slow = Reply("a long answer, token by token", chunks=5, chunk_delay=0.25)  # 1.5 s in all
    with ScriptedServer(lambda r: slow) as server:
        rec, store, _ = recorder()
        streamed = settings(server, timeout=0.6, stream=True)
        (done,) = run_calls([LLMClient(streamed, "researcher", rec)])
    assert done.text == slow.content and store.calls[0]["latency"] > 1.0


def test_a_stalled_stream_times_out_with_its_own_line() -> None:
    stalled = Reply("never", chunks=2, chunk_delay=1.0)
    with ScriptedServer(lambda r: stalled) as server:
        rec, _, _ = recorder()
        streamed = settings(server, timeout=0.4, stream=True, retries=0)
        with pytest.raises(AgentError, match="no new token from scripted-model for 0.4s"):
            run_calls([LLMClient(streamed, "researcher", rec)])


# -------------------------------------------------- failures that repeat
@pytest.mark.parametrize(
    "status, hint",
    [
        (401, "refuses the API key: check api.api_key or api.api_key_env"),
        (403, "may not use scripted-model"),
        (404, "no model 'scripted-model' (or no chat API) at"),
    ],
)
def test_failures_every_call_meets_are_endpoint_errors_counted_in_a_row(
    status: int, hint: str
) -> None:
    with ScriptedServer() as server:
        server.push(*[error(status, "nope")] * 2, "fine", error(status, "nope"))
        rec, _, _ = recorder()
        client = LLMClient(settings(server), "researcher", rec)

        async def go() -> list[Any]:
            outcomes: list[Any] = []
            for _ in range(4):
                try:
                    outcomes.append((await client.complete(MESSAGES)).text)
                except EndpointError as exc:
                    outcomes.append((exc.repeated, str(exc)))
            await client.close()
            return outcomes

        outcomes = asyncio.run(go())
    assert [o[0] if isinstance(o, tuple) else o for o in outcomes] == [1, 2, "fine", 1]
    assert all(hint in o[1] and f"HTTP {status}: nope" in o[1] for o in outcomes if o != "fine")


# ------------------------------------------------------------- redaction
def test_a_short_key_is_redacted_only_as_a_whole_word() -> None:
    rec = CallRecorder(["x"])
    text = "Unsupported parameter: 'max_tokens' with key x. Use 'max_completion_tokens' (x)"
    assert rec.redact(text) == (
        "Unsupported parameter: 'max_tokens' with key [redacted]. Use 'max_completion_tokens' "
        "([redacted])"
    )
    rec.add_secret(LONG_KEY)
    assert rec.redact(f"key={LONG_KEY};Bearer {LONG_KEY}x") == ("key=[redacted];Bearer [redacted]x")


@pytest.mark.parametrize("key", ["x", LONG_KEY])
def test_key_redaction_against_a_reasoning_model(key: str) -> None:
    with ScriptedServer(refuse=REASONING_REFUSALS, api_key=key) as server:
        rec, store, said = recorder()
        run_calls([LLMClient(settings(server, api_key=key, max_tokens=10), "researcher", rec)])
        wrong = LLMClient(settings(server, api_key=f"{key}-old"), "researcher", rec)
        with pytest.raises(EndpointError) as err:
            run_calls([wrong])
    assert "'max_tokens'" in said[0] and "[redacted]" not in said[0]
    assert "'max_tokens'" in store.calls[0]["error"] and "[redacted]" not in store.calls[0]["error"]
    # The server echoes the wrong key, which holds the right one: redacted whole.
    assert "HTTP 401: Incorrect API key provided: [redacted]." in str(err.value)


# ------------------------------------------------------------ whole runs
def env_for(server: ScriptedServer, key: str = "x") -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": key}


def write_config(path: Path, **api: Any) -> Path:
    path.write_text(json.dumps({"api": {"backoff_base": 0.01, "retries": 2, **api}}))
    return path


def events(run_dir: Path) -> list[str]:
    return [r["message"] for r in rows(run_dir, "SELECT message FROM events ORDER BY id")]


@pytest.mark.slow
def test_a_config_for_an_older_model_runs_on_a_reasoning_model(tmp_path: Path) -> None:
    """The issue's run: temperature 0.8 and max_tokens 4000 against a reasoning model, key
    "x". Before: 31 refused calls, 30 failed steps, exit 0, 'ma[redacted]_tokens'."""
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    editor = ConstantEditor([("X = 1.0", "X = 2.0"), ("Y = 0.5", "Y = 0.9")])
    config = write_config(tmp_path / "c.yaml", temperature=0.8, max_tokens=4000)
    with ScriptedServer(agents_script(editor), refuse=REASONING_REFUSALS) as server:
        result = cli(
            "run", str(task), "--llm", "openai", "--steps", "4", "--workers", "2",
            "--no-cognition", "--run-dir", str(run_dir), "--config", str(config),
            env=env_for(server),
        )  # fmt: skip
        keys = body_keys(server)
    assert result.returncode == 0, result.stderr + result.stdout
    info = json.loads(cli("status", str(run_dir), "--json").stdout)
    assert info["steps_done"] == 4 and info["failed"] == 0, info
    assert sum("max_tokens" in k for k in keys) == 1 and sum("temperature" in k for k in keys) == 2
    refused = [c["error"] for c in rows(run_dir, "SELECT error FROM llm_calls WHERE ok = 0")]
    assert len(refused) == 2 and "'max_tokens'" in refused[0] and "'temperature'" in refused[1]
    assert result.stdout.count("refuses 'max_tokens'") == 1
    assert result.stdout.count("refuses 'temperature'") == 1
    said = [e for e in events(run_dir) if "refuses" in e]
    assert len(said) == 2 and all("[redacted]" not in e for e in said), said


@pytest.mark.slow
def test_thinking_never_reaches_the_diff_or_the_analysis(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    decoy_knowledge = "<knowledge><title>Decoy</title><content>from thinking</content></knowledge>"
    # Two rules: two different programs (a copy of an evaluated one would owe no analysis).
    editor = ConstantEditor([("X = 1.0", "X = 2.0"), ("Y = 0.5", "Y = 0.9")])
    researcher = with_thinking(editor, DECOY, "tag")
    analyzer = with_thinking(analysis_reply, f"{decoy_knowledge}\n<analysis>draft", "field")
    config = write_config(tmp_path / "c.yaml", stream=True)
    with ScriptedServer(agents_script(researcher, analyzer)) as server:
        result = cli(
            "run", str(task), "--llm", "openai", "--steps", "2", "--workers", "1",
            "--no-cognition", "--run-dir", str(run_dir), "--config", str(config),
            env=env_for(server),
        )  # fmt: skip
        assert all(r.body.get("stream") for r in server.chat_requests)
    assert result.returncode == 0, result.stderr + result.stdout
    nodes = rows(run_dir, "SELECT * FROM nodes WHERE step >= 1 ORDER BY step")
    assert [n["status"] for n in nodes] == ["done", "done"]
    for node in nodes:
        assert "99" not in node["code"] and "draft" not in node["analysis"]
        assert node["analysis"].startswith("LLM analysis")
        titles = [k["title"] for k in json.loads(node["metadata"])["knowledge_proposals"]]
        assert titles == ["Scripted lesson"]
        assert json.loads(node["metadata"])["researcher"]["repairs"] == 0
    responses = [c["response"] for c in rows(run_dir, "SELECT response FROM llm_calls")]
    assert all("<think>" in r for r in responses)  # kept in the record


@pytest.mark.slow
def test_a_refused_key_stops_the_run_without_spending_its_steps(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    editor = ConstantEditor([("X = 1.0", "X = 2.0"), ("Y = 0.5", "Y = 0.9")])
    with ScriptedServer(agents_script(editor), api_key=LONG_KEY) as server:
        failed = cli(
            "run", str(task), "--llm", "openai", "--steps", "30", "--workers", "2",
            "--no-cognition", "--run-dir", str(run_dir), "--config",
            str(write_config(tmp_path / "c.yaml")), env=env_for(server, key="sk-revoked-key-1"),
        )  # fmt: skip
        refused = len(server.chat_requests)
        assert failed.returncode == 1, failed.stderr + failed.stdout
        assert failed.stderr.count("\n") == 1, failed.stderr
        line = failed.stderr
        assert "researcher calls failed 3 times in a row" in line
        assert "HTTP 401: Incorrect API key provided" in line and "api.api_key_env" in line
        assert "run finished" not in failed.stdout
        assert refused <= 6  # the root's analysis, then a few researcher calls: not 30
        info = json.loads(cli("status", str(run_dir), "--json").stdout)
        assert info["steps_done"] == 0 and info["failed"] == 0, info

        # The key fixed, a resume runs every step, the owed analysis of the root included.
        again = cli(
            "run", str(task), "--llm", "openai", "--steps", "30", "--workers", "2",
            "--run-dir", str(run_dir), env=env_for(server, key=LONG_KEY),
        )  # fmt: skip
    assert again.returncode == 0, again.stderr + again.stdout
    info = json.loads(cli("status", str(run_dir), "--json").stdout)
    assert info["steps_done"] == 30 and info["failed"] == 0, info
    root = rows(run_dir, "SELECT analysis, metadata FROM nodes WHERE step = 0")[0]
    assert root["analysis"].startswith("LLM analysis")
    assert "post_pending" not in json.loads(root["metadata"])


def test_check_llm_says_what_the_model_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", temperature=0.8, max_tokens=4000)
    with ScriptedServer(refuse=REASONING_REFUSALS) as server:
        result = cli("check-llm", "--config", str(config), env=env_for(server))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("ok researcher, analyzer, judge, debugger, static_check")
    assert "refuses 'max_tokens': sending max_completion_tokens" in line
    assert "refuses 'temperature': sent without it" in line and not result.stderr
