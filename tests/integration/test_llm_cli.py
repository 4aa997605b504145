"""The CLI with ``--llm openai`` against the scripted server, end to end.

The engine runs as a real ``asi-evolve`` subprocess; the scripted server runs in this
test process and answers through the real ``openai`` client.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, cli, make_toy_task
from scripted_server import (
    GARBAGE,
    MODEL,
    ConstantEditor,
    Reply,
    ScriptedServer,
    agents_script,
    error,
    role_of,
)

KEY = "sk-test-secret"
INITIAL_SCORE = 0.9598
CIRCLE_RULES = [
    ("outer = 0.7", "outer = 0.55"),
    ("margin = 0.01", "margin = 0.1"),
    ("inner = 0.3", "inner = 0.25"),
]


def env_for(server: ScriptedServer) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}


def write_config(path: Path, **sections: Any) -> Path:
    api = {
        "backoff_base": 0.05,
        "retries": 3,
        "timeout": 20,
        "prices": {MODEL: {"prompt": 1.0, "completion": 2.0}},
    }
    path.write_text(json.dumps({"api": api, **sections}))  # JSON is YAML
    return path


def rows(run_dir: Path, sql: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(run_dir / "evolve.db")
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute(sql))
    finally:
        db.close()


def meta(run_dir: Path, key: str) -> Any:
    (value,) = rows(run_dir, f"SELECT value FROM meta WHERE key = '{key}'")[0]
    return json.loads(value)


def circle_task(tmp_path: Path) -> str:
    """The built-in domain; its initial program must still hold the constants the rules edit."""
    code = (REPO / "domains" / "circle_packing" / "initial.py").read_text()
    assert all(old in code for old, _ in CIRCLE_RULES), "CIRCLE_RULES no longer match initial.py"
    return "circle_packing"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_circle_packing_end_to_end_survives_faults_and_improves(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    editor = ConstantEditor(CIRCLE_RULES, bad_first=True)
    with ScriptedServer(agents_script(editor)) as server:
        server.fault_at(2, error(500))
        server.fault_at(4, error(429, "rate limited", **{"Retry-After": "1"}))
        server.fault_at(7, GARBAGE)
        result = cli(
            "run", circle_task(tmp_path), "--llm", "openai", "--steps", "8", "--workers", "2",
            "--run-dir", str(run_dir), "--config", str(write_config(tmp_path / "c.yaml")),
            env=env_for(server), timeout=110,
        )  # fmt: skip
        requests = server.chat_requests
    assert result.returncode == 0, result.stderr + result.stdout
    assert "LLM researcher" in result.stdout

    status = cli("status", str(run_dir), "--json")
    info = json.loads(status.stdout)
    assert info["steps_done"] == 8 and info["failed"] == 0, info
    assert info["best_score"] > INITIAL_SCORE
    assert info["llm"]["prompt_tokens"] > 0 and info["llm"]["completion_tokens"] > 0
    assert info["llm"]["cost_usd"] > 0 and info["llm_mode"] == "openai"
    text = cli("status", str(run_dir)).stdout
    assert "llm use:" in text and "tokens" in text

    nodes = rows(run_dir, "SELECT * FROM nodes WHERE step >= 1 ORDER BY step")
    assert len(nodes) == 8
    copies = 0
    for node in nodes:
        assert node["status"] == "done"
        assert node["motivation"].startswith(("Change '", "A no-op note")), node["motivation"]
        metadata = json.loads(node["metadata"])
        if metadata.get("duplicate_of"):  # an edit made twice: the first evaluation is reused
            assert node["analysis"].startswith("Same program as #"), node["analysis"]
            copies += 1
            continue
        assert node["analysis"].startswith("LLM analysis: the candidate is done"), node["analysis"]
        assert metadata["knowledge_proposals"][0]["title"] == "Scripted lesson"
    assert copies <= 4  # most edits are new programs

    calls = rows(run_dir, "SELECT * FROM llm_calls")
    ok = [c for c in calls if c["ok"]]
    assert {c["role"] for c in ok} == {"researcher", "analyzer"}
    assert all(c["prompt_tokens"] > 0 and c["completion_tokens"] > 0 for c in ok)
    assert all(c["model"] == MODEL and c["prompt"] and c["response"] for c in ok)
    errors = " | ".join(c["error"] for c in calls if not c["ok"])
    assert "HTTP 500" in errors and "HTTP 429" in errors and "malformed response" in errors
    assert len(calls) == len(requests)  # every attempt is accounted for
    repaired = [json.loads(n["metadata"])["researcher"]["repairs"] for n in nodes]
    assert sum(repaired) == 1  # the first, mismatched SEARCH was repaired
    events = " ".join(r["message"] for r in rows(run_dir, "SELECT message FROM events"))
    assert "retrying in 1.00s" in events  # Retry-After: 1 was honoured

    # The key went to the server and nowhere into the run directory or the output.
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in requests)
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in result.stdout + result.stderr + status.stdout


@pytest.mark.slow
def test_no_analyzer_ablation_is_recorded_and_feeds_raw_results(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    editor = ConstantEditor([("X = 1.0", "X = 2.0"), ("Y = 0.5", "Y = 0.9")])
    config = write_config(tmp_path / "c.yaml")
    with ScriptedServer(agents_script(editor)) as server:
        first = cli(
            "run", str(task), "--llm", "openai", "--steps", "2", "--workers", "1",
            "--no-analyzer", "--no-cognition", "--run-dir", str(run_dir), "--config", str(config),
            env=env_for(server),
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        # Resuming without the flags keeps the run's ablation settings.
        again = cli(
            "run", str(task), "--llm", "openai", "--steps", "3", "--run-dir", str(run_dir),
            env=env_for(server),
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        roles = [role_of(r.body) for r in server.chat_requests]
        prompts = [r.text for r in server.chat_requests]
    stored = meta(run_dir, "config")
    assert stored["use_analyzer"] is False and stored["use_cognition"] is False
    assert roles == ["researcher"] * 3  # no analyzer calls at all
    assert all("Raw results (no analyzer in this run)" in p for p in prompts)
    assert all(n["analysis"] == "" for n in rows(run_dir, "SELECT analysis FROM nodes"))
    assert "Analysis:" not in "".join(prompts)
    calls = rows(run_dir, "SELECT node_id, role FROM llm_calls")
    assert len(calls) == 3 and all(c["role"] == "researcher" and c["node_id"] for c in calls)


@pytest.mark.slow
def test_config_api_key_is_used_but_never_stored(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    secret = "sk-config-only-secret"
    with ScriptedServer(agents_script(ConstantEditor([("X = 1.0", "X = 2.0")]))) as server:
        config = tmp_path / "c.yaml"
        config.write_text(
            json.dumps({"api": {"base_url": server.base_url, "api_key": secret, "retries": 0}})
        )
        result = cli(
            "run", str(task), "--steps", "1", "--run-dir", str(run_dir), "--config", str(config),
            "--no-cognition",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert server.chat_requests[0].headers["authorization"] == f"Bearer {secret}"
    assert "api_key" not in meta(run_dir, "config")["api"]
    assert meta(run_dir, "llm_mode") == "openai"  # an endpoint in the config selects the LLM
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_judge_blends_into_the_score(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    editor = ConstantEditor([("X = 1.0", "X = 2.0")])
    judge = {"ratio": 0.5, "template": "judge", "scale": [-10, 0]}
    with ScriptedServer(agents_script(editor, judge=lambda r: Reply("<score>0.5</score>"))) as s:
        result = cli(
            "run", str(task), "--llm", "openai", "--steps", "1", "--run-dir", str(run_dir),
            "--no-cognition", "--config", str(write_config(tmp_path / "c.yaml", judge=judge)),
            env=env_for(s),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    node = rows(run_dir, "SELECT score, results FROM nodes WHERE step = 1")[0]
    results = json.loads(node["results"])
    assert results["judge_score"] == -5.0 and results["eval_score"] == pytest.approx(-1.25)
    assert node["score"] == pytest.approx(0.5 * -1.25 + 0.5 * -5.0)


@pytest.mark.slow
def test_token_budget_stops_new_candidates(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", budget={"max_tokens_total": 1})
    with ScriptedServer(agents_script(ConstantEditor([("X = 1.0", "X = 2.0")]))) as server:
        result = cli(
            "run", str(task), "--llm", "openai", "--steps", "5", "--run-dir", str(run_dir),
            "--no-cognition", "--config", str(config), env=env_for(server),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads(cli("status", str(run_dir), "--json").stdout)
    assert info["steps_done"] == 0 and info["llm"]["calls"] == 1  # only the root's analysis


# ---------------------------------------------------------------- errors
def test_llm_openai_without_endpoint_is_a_one_line_error(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    result = cli("run", str(task), "--llm", "openai", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no LLM endpoint configured" in result.stderr
    assert not (tmp_path / "r").exists()


def test_missing_judge_template_is_a_config_error(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    config = write_config(tmp_path / "c.yaml", judge={"ratio": 0.3, "template": "nope.j2"})
    with ScriptedServer() as server:
        result = cli(
            "run", str(task), "--llm", "openai", "--run-dir", str(tmp_path / "r"),
            "--config", str(config), env=env_for(server),
        )  # fmt: skip
        assert not server.requests
    assert result.returncode == 2 and "judge.template 'nope.j2' not found" in result.stderr
    assert not (tmp_path / "r").exists()


def test_check_llm_reports_model_latency_and_tokens() -> None:
    with ScriptedServer() as server:
        result = cli("check-llm", env=env_for(server))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    roles = "researcher, analyzer, judge, debugger, static_check"
    assert line.startswith(f"ok {roles}: model scripted-model")
    assert "latency" in line and "tokens" in line and KEY not in line


@pytest.mark.slow
def test_check_llm_failure_is_one_line_exit_1(tmp_path: Path) -> None:
    with ScriptedServer(lambda r: error(401, "invalid api key")) as server:
        result = cli("check-llm", env=env_for(server))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "HTTP 401: invalid api key" in result.stderr
    config = tmp_path / "c.yaml"
    config.write_text("api: {model: m}\n")
    missing = cli("check-llm", "--config", str(config))
    assert missing.returncode == 2 and "no LLM endpoint configured" in missing.stderr
