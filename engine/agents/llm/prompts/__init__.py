"""Prompt templates: the built-ins here, overridable per task by ``TASK/prompts/NAME``.

Templates are Jinja2 with ``StrictUndefined``: a misspelt variable in a task's override
is an error at start (``check``) or on the node it breaks, never a silently empty
section of a prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from engine.agents.base import AgentError, AgentSetupError

BUILTIN_DIR = Path(__file__).resolve().parent
LANGS = {".py": "python", ".c": "c", ".cpp": "cpp", ".cu": "cuda", ".rs": "rust", ".js": "js"}


def lang_for(program_name: str) -> str:
    """The code-fence language of a program file (empty when unknown)."""
    return next((lang for ext, lang in LANGS.items() if program_name.endswith(ext)), "")


class Templates:
    def __init__(self, task_prompts_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if task_prompts_dir is not None and task_prompts_dir.is_dir():
            loaders.append(jinja2.FileSystemLoader(str(task_prompts_dir)))
        loaders.append(jinja2.FileSystemLoader(str(BUILTIN_DIR)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self._loaded: dict[str, jinja2.Template] = {}

    def check(self, *names: str) -> None:
        """Load (and so syntax-check) templates now; AgentSetupError with the reason."""
        for name in names:
            self._get(name)

    def add_file(self, name: str, path: Path) -> None:
        """Register a template by path (e.g. a judge template in the task directory)."""
        try:
            self._loaded[name] = self.env.from_string(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentSetupError(f"cannot read template {path}: {exc}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise AgentSetupError(f"template {path}: line {exc.lineno}: {exc.message}") from None

    def exists(self, name: str) -> bool:
        try:
            self.env.get_template(name)
        except jinja2.TemplateNotFound:
            return False
        except jinja2.TemplateSyntaxError:
            return True
        return True

    def render(self, name: str, **variables: Any) -> str:
        template = self._get(name)
        try:
            return template.render(**variables).strip() + "\n"
        except jinja2.TemplateError as exc:
            raise AgentError(f"prompt template {name}: {exc}") from None

    def _get(self, name: str) -> jinja2.Template:
        if name not in self._loaded:
            try:
                self._loaded[name] = self.env.get_template(name)
            except jinja2.TemplateNotFound:
                raise AgentSetupError(f"prompt template {name!r} not found") from None
            except jinja2.TemplateSyntaxError as exc:
                where = exc.filename or name
                raise AgentSetupError(
                    f"template {where}: line {exc.lineno}: {exc.message}"
                ) from None
        return self._loaded[name]


def node_view(
    node: Any, code_chars: int | None = None, logs_chars: int = 3_000, lang: str = ""
) -> dict[str, Any]:
    """What a template sees of a node: plain values, long texts cut *visibly*."""
    results = node.results if isinstance(node.results, dict) else {}
    metrics = results.get("metrics") if isinstance(results.get("metrics"), dict) else {}
    code = (node.code or "").rstrip("\n")
    omitted = 0
    if code_chars is not None and len(code) > code_chars:
        omitted = len(code) - code_chars
        code = code[:code_chars]
    score = node.score
    return {
        "id": node.id,
        "step": node.step,
        "name": node.name or f"step-{node.step}",
        "status": node.status,
        "score": score,
        "score_text": "-" if score is None else f"{score:.6g}",
        "motivation": (node.motivation or "").strip(),
        "analysis": (node.analysis or "").strip(),
        "error": node.error or "",
        "metrics": metrics,
        "logs": tail(str(results.get("logs") or ""), logs_chars),
        "stdout": tail(str(results.get("stdout_tail") or ""), logs_chars),
        "stderr": tail(str(results.get("stderr_tail") or ""), logs_chars),
        "judge_score": results.get("judge_score"),
        "eval_score": results.get("eval_score"),
        # A task's own structured report (e.g. data curation: per-issue-type table, pairs).
        "breakdown": results.get("breakdown") or {},
        "samples": results.get("samples") or [],
        # Staged evaluation: each stage's outcome, without its bulky results.
        "stages": {
            name: stage_view(record)
            for name, record in (results.get("stages") or {}).items()
            if isinstance(record, dict)
        },
        "code": code,
        "code_omitted": omitted,
        "lang": lang,
    }


def stage_view(record: dict[str, Any]) -> dict[str, Any]:
    """One stage's outcome with every field a template may test. A stage that ran has no
    ``skipped`` and a skipped one no ``ok``/``score``/``error``; under StrictUndefined a
    template reading a missing one fails, and with it every analysis of a staged task.
    ``metrics``: the stage's own (a verify stage's are the only place its verdict, e.g.
    ``beats_baseline``, reaches an agent); the bulky rest of its results is left out."""
    view = {"skipped": "", "ok": False, "score": None, "error": "", "runtime": None}
    view.update({k: v for k, v in record.items() if k not in ("results", "code")})
    results = record.get("results")
    metrics = results.get("metrics") if isinstance(results, dict) else None
    view["metrics"] = metrics if isinstance(metrics, dict) else {}
    return view


def analysis_variables(inp: Any, view: Any) -> dict[str, Any]:
    """What the Analyzer's and the Judge's templates see of an ``AnalysisInput``."""
    return {
        "task": {
            "name": inp.task_name,
            "description": inp.task_description.strip(),
            "maximize": inp.maximize,
        },
        "node": view(inp.node),
        "parent": view(inp.parent),
        "best": view(inp.best),
    }


def tail(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} earlier characters omitted]\n" + text[-limit:]
