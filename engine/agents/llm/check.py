"""``asi-evolve check-llm``: one tiny request per configured endpoint, before a long run.

It answers the questions a user has before spending hours: is the endpoint reachable,
does the key work, which model answers, how fast, and are tokens reported (the budget
depends on them). Each distinct (endpoint, model) of the roles is checked once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from engine.agents.base import AgentError
from engine.agents.llm.client import CallRecorder, LLMClient
from engine.agents.llm.settings import ROLES, LLMSettings, resolve_settings

PROMPT = [{"role": "user", "content": "Reply with the single word OK."}]


@dataclass
class CheckResult:
    roles: list[str]
    base_url: str
    model: str
    latency: float
    prompt_tokens: int
    completion_tokens: int
    reply: str
    error: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)  # parameters the model refused

    def line(self) -> str:
        who = ", ".join(self.roles)
        if self.error:
            return f"FAILED {who}: {self.base_url}: {self.error}"
        return (
            f"ok {who}: model {self.model} at {self.base_url}, latency {self.latency:.2f}s, "
            f"tokens {self.prompt_tokens} prompt + {self.completion_tokens} completion, "
            f"reply {self.reply!r}" + "".join(f"; {note}" for note in self.notes)
        )


def distinct_endpoints(api: dict[str, Any]) -> list[tuple[list[str], LLMSettings]]:
    """The roles grouped by the (endpoint, model, key) they would call."""
    groups: dict[tuple, tuple[list[str], LLMSettings]] = {}
    for role in ROLES:
        settings = resolve_settings(api, role)
        key = (settings.base_url, settings.model, settings.api_key)
        groups.setdefault(key, ([], settings))[0].append(role)
    return list(groups.values())


async def _check(roles: list[str], settings: LLMSettings) -> CheckResult:
    # A check reports the first failure rather than waiting through long backoffs.
    quick = dataclasses.replace(
        settings, retries=min(settings.retries, 1), backoff_base=min(settings.backoff_base, 1.0)
    )
    recorder = CallRecorder()
    notes: list[str] = []
    recorder.say = notes.append  # what the model refused, said on the check's line
    client = LLMClient(quick, "check", recorder)
    started = time.monotonic()
    try:
        done = await client.complete(PROMPT)
    except AgentError as exc:
        return CheckResult(roles, settings.base_url, client.label, 0.0, 0, 0, "", str(exc))
    finally:
        await client.close()
    return CheckResult(
        roles,
        settings.base_url,
        done.model,
        time.monotonic() - started,
        done.prompt_tokens,
        done.completion_tokens,
        " ".join(done.text.split())[:40],
        notes=notes,
    )


def check_llm(api: dict[str, Any]) -> list[CheckResult]:
    """Check every distinct endpoint; AgentSetupError when none is configured."""
    groups = distinct_endpoints(api)

    async def run_all() -> list[CheckResult]:
        return [await _check(roles, settings) for roles, settings in groups]

    return asyncio.run(run_all())
