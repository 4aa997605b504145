"""The researcher's prompt over a long run, with and without the prompt budget (issue 24).

Builds a 1,000-node population in a real run store - programs that grow from about 3 KB to
10 KB over the run, analyses of 1-2 KB, motivations, evaluator logs - and samples it with the
real sampler at steps 10, 100 and 1000. For each sampled round it renders the LLM
researcher's first prompt (system and user message, the built-in templates) with a
knowledge item per context node, and prints the *estimated* tokens per prompt
(``engine/agents/llm/budget.py``: characters / 3.5): without a budget
(``api.context_tokens: null``) and with the given budgets (minus ``--max-tokens`` for the
answer), plus what the budget trimmed.

    python benchmarks/prompt_budget.py [--n-context 8] [--rounds 20] [--seed 0]
                                       [--budgets 32000 16000] [--max-tokens 4096]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.agents.base import Knowledge, ResearchContext  # noqa: E402
from engine.agents.llm.client import CallRecorder, LLMClient  # noqa: E402
from engine.agents.llm.prompts import Templates  # noqa: E402
from engine.agents.llm.researcher import LLMResearcher  # noqa: E402
from engine.agents.llm.settings import LLMSettings, ResearcherSettings  # noqa: E402
from engine.samplers import SamplerSettings, make_sampler  # noqa: E402
from engine.store.records import DONE, FAILED, Node  # noqa: E402
from engine.store.run_store import RunStore  # noqa: E402

STEPS = (10, 100, 1000)
TASK = (
    "Pack 26 circles into the unit square so that the sum of their radii is as large as "
    "possible. The program defines run() returning the centres and radii; circles must not "
    "overlap and must lie inside the square. " * 4
)
WORDS = [
    "radius",
    "centers",
    "grid",
    "offset",
    "score",
    "overlap",
    "boundary",
    "shrink",
    "grow",
    "step",
    "best",
    "trial",
    "angle",
    "row",
    "col",
    "jitter",
    "margin",
    "packing",
    "candidate",
    "weight",
    "scale",
    "eps",
    "tol",
    "iters",
    "lr",
]


def code_of(rng: random.Random, chars: int) -> str:
    """Python-looking code of about ``chars`` characters (indentation, calls, numbers)."""
    lines = ["import math", "import numpy as np", ""]
    size = sum(len(line) + 1 for line in lines)
    fn = 0
    while size < chars:
        if fn == 0 or rng.random() < 0.12:
            fn += 1
            line = f"\ndef {rng.choice(WORDS)}_{fn}({', '.join(rng.sample(WORDS, 3))}):"
        else:
            a, b, c = rng.sample(WORDS, 3)
            indent = "    " * rng.randint(1, 3)
            line = rng.choice(
                [
                    f"{indent}{a} = {b} * {rng.uniform(0, 2):.4f} + {c}",
                    f"{indent}for {a} in range(len({b})):",
                    f"{indent}if {a} > {b}:",
                    f"{indent}{a}[{b}] = np.clip({c}, 0.0, 1.0)",
                    f"{indent}return {a}, {b}",
                    f"{indent}# {a} {b} {c}: keep the {a} away from the {c}",
                ]
            )
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


def prose(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize()
        out.append(sentence + ".")
        size += len(sentence) + 2
    return " ".join(out)


def add_nodes(store: RunStore, start: int, stop: int, rng: random.Random) -> None:
    """Steps ``start`` .. ``stop - 1``: programs grow from ~3 KB to ~10 KB over 1,000 steps."""
    for step in range(start, stop):
        grown = min(1.0, step / 1000)
        failed = step > 0 and rng.random() < 0.15
        score = None if failed else 1.0 + 1.5 * grown + rng.gauss(0, 0.1)
        store.insert_node(
            Node(
                step=step,
                name=f"idea-{step}",
                code=code_of(rng, int(3_000 + 7_000 * grown + rng.uniform(-500, 500))),
                motivation=prose(rng, rng.randint(300, 700)),
                analysis=prose(rng, rng.randint(1_000, 2_000)),
                results={
                    "metrics": {"sum_radii": score or 0.0, "valid": not failed},
                    "logs": prose(rng, rng.randint(500, 2_500)),
                    "stderr_tail": "Traceback ...\nValueError: overlap" if failed else "",
                },
                error="evaluator exited with 1" if failed else None,
                score=score,
                status=FAILED if failed else DONE,
            )
        )


def researcher(context_tokens: int | None, max_tokens: int) -> LLMResearcher:
    settings = LLMSettings(
        base_url="http://127.0.0.1:9/v1",  # never called: only the prompt is rendered
        model="m",
        max_tokens=max_tokens,
        context_tokens=context_tokens,
    )
    client = LLMClient(settings, "researcher", CallRecorder())
    return LLMResearcher(client, Templates(), ResearcherSettings(), program_name="program.py")


def contexts(
    store: RunStore, step: int, n_context: int, rounds: int, seed: int
) -> list[ResearchContext]:
    """``rounds`` research contexts as the loop would build them at ``step``."""
    sampler = make_sampler(SamplerSettings(name="rank", n_context=n_context), store, seed=seed)
    rng = random.Random(seed * 7919 + step)
    out = []
    for i in range(rounds):
        selection = sampler.sample(step=step * 1000 + i)
        nodes = [store.get_node(node_id) for node_id in selection.context_ids]
        context = [n for n in nodes if n is not None]
        knowledge = [
            Knowledge(id=k, title=prose(rng, 40), content=prose(rng, rng.randint(400, 1_200)))
            for k in range(len(context))
        ]
        for k in knowledge:
            k.score = round(rng.uniform(0.2, 0.9), 3)
        out.append(
            ResearchContext(
                task_name="circle_packing",
                task_description=TASK,
                parent=context[0],
                context=context,
                knowledge=knowledge,
                step=step,
                node_id=step + 1,
            )
        )
    return out


def measure(
    n_context: int = 8,
    rounds: int = 20,
    seed: int = 0,
    budgets: tuple[int | None, ...] = (None, 32_000, 16_000),
    max_tokens: int = 4_096,
    steps: tuple[int, ...] = STEPS,
    run_dir: Path | None = None,
) -> dict[int, dict[int | None, list[dict[str, Any]]]]:
    """Per step, per budget (None: no budget): one row per round, its estimated tokens, the
    budget it had and what was trimmed."""
    agents = {b: researcher(b, max_tokens) for b in budgets}
    rng = random.Random(seed)
    results: dict[int, dict[int | None, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.create((run_dir or Path(tmp)) / "run")
        try:
            done = 0
            for step in steps:
                add_nodes(store, done, step, rng)
                done = step
                rows: dict[int | None, list[dict[str, Any]]] = {b: [] for b in budgets}
                for ctx in contexts(store, step, n_context, rounds, seed):
                    for b, agent in agents.items():
                        fitted = agent.prompt(ctx)
                        api = agent.client.settings
                        rows[b].append(
                            {
                                "tokens": fitted.estimated_tokens,
                                "budget": None if b is None else b - api.max_tokens,
                                "trimmed": fitted.trimmed,
                                "parent_code_kept": ctx.parent.code.rstrip("\n")
                                in fitted.messages[1]["content"],
                                "task_kept": TASK.strip() in fitted.messages[1]["content"],
                            }
                        )
                results[step] = rows
        finally:
            store.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-context", type=int, default=8, help="sampler.n_context")
    parser.add_argument("--rounds", type=int, default=20, help="sampled rounds per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", type=int, nargs="+", default=[32_000, 16_000])
    parser.add_argument("--max-tokens", type=int, default=4_096)
    args = parser.parse_args(argv)
    budgets = (None, *args.budgets)
    results = measure(args.n_context, args.rounds, args.seed, budgets, args.max_tokens)
    print(
        f"estimated tokens per researcher prompt, median / max of {args.rounds} rounds "
        f"(rank sampler, n_context {args.n_context}, a knowledge item per context node, "
        f"max_tokens {args.max_tokens})"
    )
    print(
        f"{'step':>5}  {'context_tokens':>14}  {'prompt limit':>12}  {'tokens':>13}  "
        f"{'trimmed':>7}  {'shortened':>9}  {'dropped':>7}  {'knowledge':>9}"
    )
    for step, rows in results.items():
        for b in budgets:
            trimmed = [r["trimmed"] for r in rows[b] if r["trimmed"]]

            def mean(key: str, trimmed: list = trimmed) -> str:
                return f"{statistics.mean(t[key] for t in trimmed):.1f}" if trimmed else "-"

            limit = rows[b][0]["budget"]
            print(
                f"{step:>5}  {'null' if b is None else b:>14}  {limit or '-':>12}  "
                f"{_cell(rows[b]):>13}  {len(trimmed):>7}  {mean('shortened_nodes'):>9}  "
                f"{mean('dropped_nodes'):>7}  {mean('dropped_knowledge'):>9}"
            )
    print(
        "trimmed: rounds whose prompt was trimmed; shortened / dropped: context nodes per "
        "trimmed round (mean); knowledge: items dropped per trimmed round (mean)"
    )


def _cell(rows: list[dict[str, Any]]) -> str:
    tokens = [r["tokens"] for r in rows]
    return f"{int(statistics.median(tokens))} / {max(tokens)}"


if __name__ == "__main__":
    main()
