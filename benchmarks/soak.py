"""Soak test: a live engine under outside steering, outside readers and kill -9, for minutes.

What it measures is whether the run database stays one consistent, complete record while
everything that touches it from outside does so at random moments (issue 19: a process that
dropped SQLite's POSIX locks let a TUI pause reset the WAL, and nodes printed as finished
were lost on kill -9). An engine (``--workers 2``) runs a toy task whose evaluator sleeps
``--delay`` s x U(1-J, 1+J) and fails a share ``--fail`` of the candidates; at the same time

* a steering thread pauses, resumes and prunes (in-flight, finished and pruned nodes, the
  root, unknown ids, malformed arguments) through the TUI's own ``engine.store.steer.send_command``,
  in this process or (``--own-process`` of the writes) from a one-shot process of its own;
* a TUI that comes and goes (``engine.store.reader.RunReader`` + ``tui.poller.Poller.tick()`` every
  0.2 s while attached; while it is away this process holds no connection open) and a
  brand-new read-only connection per tick record when each first sees a printed node;
* a thread runs ``asi-evolve status RUN --json`` subprocesses;
* the main thread ends each engine life at a random moment: ``kill -9`` (sometimes during
  startup, sometimes while paused), else a ``stop`` command or SIGTERM; it writes commands
  while no engine runs, checks the database, and resumes (``asi-evolve run TASK --run-dir
  RUN --steps N``).

Checked after each life and at the end: every node printed as finished (all lives) is in
the database once, with its step, finished (done/failed/pruned), and was printed once; no
step has two nodes; ``PRAGMA integrity_check`` is ok; every command row is answered once
(handled/rejected, ``handled_at``, a result: the expected one for what was sent, e.g. a
root prune is rejected with its reason; a command written while no engine ran is expired
at the next start; one a live engine had time to poll is not left to the next, and is
answered within 2 s); each reader saw each printed node within ``--lag-limit`` s, and no
read begun after the print missed it; status never counts fewer finished steps than were
printed before it started; a running engine's heartbeat is never stale (the TUI would say
"not running"); an engine started after a kill while paused runs without a resume; a
paused engine inserts no new node; a node whose prune was answered "pruned" ends pruned
unless its engine ended while it was still in flight (counted); the last life spends the
budget (steps 1..N each once, nothing pending, exit 0, "run finished"); a start on the
finished run runs nothing and expires what was left; no evaluator process or marker is left
and engine.log has no ERROR. An engine whose heartbeat stands still for 20 s is hung: it
gets SIGABRT (``PYTHONFAULTHANDLER`` is set, so every thread's Python stack lands in
``engine-N.stderr``) and is killed. Violations are printed when found; the exit status is 1
if there is any (``--allow KIND``: reported, not failed; ``--fail-fast``: stop at the first).

The last life runs without faults until the budget is spent. With ``--steps 0`` (default)
the budget is open-ended while faults are injected and the last life resumes with
``--steps`` = (finished steps so far) + ``--tail``; with ``--steps N`` every life uses N and
faults stop when ``--minutes`` are spent or N is reached. ``--config`` gives the new run a
configuration (e.g. ``engineer: {cpu_seconds: 60}``). The engine, TUI and CLI code is the
checkout this file is in (run a copy of the repository to soak another version).

Every random choice comes from ``--seed`` (one stream per thread: the decisions replay,
thread timing does not). The run, the engines' stderr and a trace of every action are kept
in ``--keep DIR``, or in a temp dir that is printed when a violation was found.

    python benchmarks/soak.py --minutes 5 --seed 0
    python benchmarks/soak.py --minutes 1 --seed 3 --delay 0.05 --life 3 10 --keep /tmp/soak
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.store.lock import engine_alive  # noqa: E402
from engine.store.reader import HEARTBEAT_STALE_S, RunReader  # noqa: E402
from engine.store.schema import FINISHED  # noqa: E402
from engine.store.steer import send_command  # noqa: E402
from tui.poller import Poller  # noqa: E402

STEP_LINE = re.compile(r"^step\s+(\d+)\s+#(\d+)\s")
FINISH_LINE = re.compile(r"^run (finished|stopped): (\d+)/(\d+) steps")
LIVE = ("running", "paused")
EXPIRED = "expired: written while no engine was running"
# A steering write from a process of its own (a TUI just started, a script): its connection
# is the only one that process has on the database, so closing it may checkpoint the WAL.
WRITER = (
    "import sys; from engine.store.steer import send_command; print(send_command(*sys.argv[1:]))"
)

INITIAL = "X = 1.0\nY = 0.5\n"  # never fails: the run needs its root
TOY_EVALUATOR = textwrap.dedent(
    """
    import hashlib, json, math, os, runpy, sys, time
    program = sys.argv[1]
    text = open(program, "rb").read()
    digest = hashlib.sha256(text + os.environ["TOY_SEED"].encode())
    u, v = (int(digest.hexdigest()[i : i + 8], 16) / 0xFFFFFFFF for i in (0, 8))
    jitter = float(os.environ.get("TOY_JITTER", "0"))
    time.sleep(max(0.0, float(os.environ.get("TOY_DELAY", "0")) * (1 + jitter * (2 * u - 1))))
    try:
        if v < float(os.environ.get("TOY_FAIL", "0")) and text != INITIAL:
            raise ValueError("a toy failure")
        ns = runpy.run_path(program)
        x, y = float(ns["X"]), float(ns.get("Y", 0.0))
        score = -((x - 3.0) ** 2) - (y - 1.0) ** 2
        out = {"score": score, "valid": math.isfinite(score), "metrics": {"x": x, "y": y}}
    except Exception as exc:
        out = {"score": 0.0, "valid": False, "error": f"{type(exc).__name__}: {exc}"}
    with open("results.json", "w") as f:
        json.dump(out, f)
    """
)


def make_toy_task(root: Path, name: str = "toy", timeout: float = 30) -> Path:
    """A task whose program sets X and Y (score peaks at X = 3, Y = 1); the evaluator sleeps
    ``$TOY_DELAY`` x U(1 - $TOY_JITTER, 1 + $TOY_JITTER) s and fails a share ``$TOY_FAIL`` of
    the programs other than the initial one, both drawn from the program text and $TOY_SEED."""
    task = root / name
    task.mkdir(parents=True)
    (task / "task.yaml").write_text(
        f"name: {name}\ndescription: task.md\ninitial_program: initial.py\n"
        f"evaluator: evaluate.py\ntimeout: {timeout}\ndirection: maximize\n"
    )
    (task / "task.md").write_text("# Toy task\nSet X to maximize -(X-3)^2.\n")
    (task / "initial.py").write_text(INITIAL)
    (task / "evaluate.py").write_text(f"INITIAL = {INITIAL.encode()!r}\n{TOY_EVALUATOR}")
    return task


@dataclass
class Settings:
    minutes: float = 5.0
    seed: int = 0
    workers: int = 2
    delay: float = 0.15  # seconds per candidate evaluation (mean)
    jitter: float = 0.8  # the evaluation takes delay x U(1 - jitter, 1 + jitter)
    fail: float = 0.05  # share of candidates that fail
    life: tuple[float, float] = (6.0, 20.0)  # an engine lives U(a, b) s before its fault
    early_kill: float = 0.15  # share of lives killed during startup (0.2-2.5 s)
    paused_kill: float = 0.2  # share of kills while the engine is paused
    clean_stop: float = 0.15  # share of lives ended by a stop command or SIGTERM instead
    steer_every: float = 1.0  # mean seconds between steering actions
    own_process: float = 0.3  # share of steering writes made from a one-shot process
    status_every: float = 2.5  # mean seconds between `asi-evolve status` runs
    tick: float = 0.2  # the TUI poller's period
    steps: int = 0  # the run's budget; 0: open-ended until the last life (see the doc)
    tail: int = 12  # steps the last life runs when --steps is 0
    lag_limit: float = 1.0  # a reader must see a printed node within this many seconds
    answer_limit: float = 2.0  # a live engine must answer a command within this many seconds
    final_timeout: float = 240.0  # seconds the last life may take
    hang_s: float = 20.0  # a running engine whose heartbeat stands still this long is hung
    fail_fast: bool = False  # stop at the first violation (not counting --allow kinds)
    workdir: Path | None = None  # kept; default a temp dir (removed when all is well)
    quiet: bool = False
    config: Path | None = None  # a run configuration (YAML) for the new run; kept on resume
    allow: frozenset[str] = frozenset()  # violation kinds only reported (known engine issues)
    engine_cmd: list[str] = field(default_factory=lambda: [sys.executable, "-m", "engine.cli"])


@dataclass
class Printed:
    life: int
    step: int
    node: int
    t: float  # monotonic, when the line was read


@dataclass
class Sent:
    id: int
    kind: str
    arg: str
    target: str  # pause resume stop | inflight finished pruned root unknown bad
    t: float  # monotonic
    ts: float  # wall clock
    life: int | None  # the live engine life when written; None: no engine ran
    answer: tuple | None = None  # (status, handled_at, result) as first seen


@dataclass
class Life:
    index: int
    proc: subprocess.Popen
    steps: int
    t0: float  # monotonic
    wall0: float
    lines: list[str] = field(default_factory=list)
    printed: list[Printed] = field(default_factory=list)
    stderr: Path | None = None
    ending: bool = False  # the harness began to end it: readers stop judging liveness
    end_how: str = ""  # kill | stop | term | exit
    t1: float | None = None
    wall1: float | None = None
    poll_end: float | None = None  # monotonic: from here on its command poller may be gone
    rc: int | None = None
    first_beat: float | None = None  # monotonic, first heartbeat with this pid seen
    first_state: str = ""
    beat: float | None = None  # the last heartbeat value seen, and when it last moved
    beat_moved: float = 0.0
    hung: str = ""  # why it was found hung (then dumped and killed)
    reader: threading.Thread | None = None
    snapshot: dict[int, str] = field(default_factory=dict)  # node statuses after it ended


@dataclass
class Report:
    rounds: int = 0
    kills: int = 0
    early_kills: int = 0
    paused_kills: int = 0
    stops: int = 0
    terms: int = 0
    sent: int = 0
    answered: int = 0
    expired: int = 0
    rejected: int = 0
    dead_sent: int = 0
    printed: int = 0
    found: int = 0
    status_runs: int = 0
    status_max_s: float = 0.0
    ticks: int = 0
    lag: dict[str, float] = field(default_factory=lambda: {"tui": 0.0, "fresh": 0.0})
    read_s: dict[str, float] = field(default_factory=lambda: {"tui": 0.0, "fresh": 0.0})
    beat_age: float = 0.0
    answer_s: float = 0.0
    prunes: int = 0  # answered 'pruned node #N'
    prunes_lost: dict[str, int] = field(default_factory=lambda: {"kill": 0, "stop": 0})
    violations: list[tuple[str, str]] = field(default_factory=list)
    allowed: list[tuple[str, str]] = field(default_factory=list)  # kinds in --allow
    wall_s: float = 0.0
    final_steps: int = 0
    aborted: str = ""  # why the faults stopped early (the engine kept dying)


class Soak:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.rng = random.Random(settings.seed)
        self.root = settings.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
        self.root.mkdir(parents=True, exist_ok=True)
        if any(self.root.iterdir()):
            raise SystemExit(f"soak: {self.root} is not empty; --keep needs a new directory")
        self.task = make_toy_task(self.root / "tasks")
        self.run = self.root / "run"
        self.db = self.run / "evolve.db"
        self.lock = threading.RLock()  # the shared records below
        self.send_lock = threading.Lock()  # a command write vs. an engine's start or end
        self.steer_gate = threading.Lock()  # held by the main thread: no steering
        self.stop_event = threading.Event()
        self.lives: list[Life] = []
        self.current: Life | None = None
        self.printed: list[Printed] = []
        self.sent: list[Sent] = []
        self.unseen: dict[str, dict[int, Printed]] = {"tui": {}, "fresh": {}}
        self.missed: set[tuple[str, int]] = set()
        self.reported: set[str] = set()
        self.report = Report()
        self.trace_file = (self.root / "trace.log").open("w", buffering=1)
        self.t_start = time.monotonic()
        self.tui_since = 0.0  # monotonic: when the TUI reader last attached
        self.final_index = -1  # the life that ran the budget out
        self.ledger_misses = 0  # its prunes lost in `post` (each makes it overshoot by one)

    # ------------------------------------------------------------------ records
    def trace(self, message: str) -> None:
        with self.lock:
            self.trace_file.write(f"{time.monotonic() - self.t_start:9.3f} {message}\n")

    def violate(self, kind: str, message: str, key: str | None = None) -> None:
        """Record a violation (once per ``key``, default the message) and print it."""
        with self.lock:
            key = key or f"{kind}:{message}"
            if key in self.reported:
                return
            self.reported.add(key)
            allowed = kind in self.s.allow
            (self.report.allowed if allowed else self.report.violations).append((kind, message))
        label = "ALLOWED" if allowed else "VIOLATION"
        self.trace(f"{label} [{kind}] {message}")
        print(f"  {label} [{kind}] {message}", file=sys.stderr, flush=True)

    def say(self, message: str) -> None:
        self.trace(message)
        if not self.s.quiet:
            print(f"  [{time.monotonic() - self.t_start:6.1f}s] {message}", flush=True)

    # ------------------------------------------------------------------ engine
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "TOY_DELAY": str(self.s.delay),
            "TOY_JITTER": str(self.s.jitter),
            "TOY_FAIL": str(self.s.fail),
            "TOY_SEED": str(self.s.seed),
            "PYTHONPATH": str(REPO),
            "PYTHONFAULTHANDLER": "1",  # a hung engine's stacks on SIGABRT
        }
        env.pop("OPENAI_BASE_URL", None)  # offline agents
        return env

    def start_life(self, steps: int) -> Life:
        argv = [*self.s.engine_cmd, "run", str(self.task), "--run-dir", str(self.run)]
        argv += ["--steps", str(steps), "--workers", str(self.s.workers)]
        if not self.lives:
            argv += ["--seed", str(self.s.seed)]
            if self.s.config is not None:
                argv += ["--config", str(self.s.config)]
        index = len(self.lives)
        stderr = self.root / f"engine-{index}.stderr"
        with self.send_lock:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env(),
                stdout=subprocess.PIPE,
                stderr=stderr.open("w"),
                text=True,
            )
            life = Life(index, proc, steps, time.monotonic(), time.time(), stderr=stderr)
            with self.lock:
                self.lives.append(life)
                self.current = life
        life.reader = threading.Thread(target=self._read_stdout, args=(life,), daemon=True)
        life.reader.start()
        self.trace(f"life {index}: started pid {proc.pid} --steps {steps}")
        return life

    def _read_stdout(self, life: Life) -> None:
        assert life.proc.stdout is not None
        for raw in life.proc.stdout:
            t = time.monotonic()
            line = raw.rstrip("\n")
            life.lines.append(line)
            match = STEP_LINE.match(line)
            if not match:
                continue
            p = Printed(life.index, int(match.group(1)), int(match.group(2)), t)
            with self.lock:
                life.printed.append(p)
                self.printed.append(p)
                for pending in self.unseen.values():
                    pending[p.node] = p

    def end_life(self, life: Life, how: str) -> None:
        """End ``life`` by kill (-9), stop (a stop command), term (SIGTERM) or exit (wait for
        it to spend its budget). An engine whose heartbeat stops moving is hung: its Python
        stacks are dumped (SIGABRT, with PYTHONFAULTHANDLER set) and it is killed."""
        if how != "exit":
            with self.lock:
                life.ending = True
        with self.send_lock:
            life.poll_end = time.monotonic()
            if how == "kill":
                life.proc.send_signal(signal.SIGKILL)
            elif how == "term":
                life.proc.send_signal(signal.SIGTERM)
            elif how == "stop":
                self._send_locked("stop", "", "stop")
        limit = self.s.final_timeout if how == "exit" else 60
        if not self.wait_exit(life, limit):
            self.on_hang(life, f"did not end ({how}) within {limit:.0f}s")
        with self.send_lock:  # from here on a command is written while no engine runs
            life.rc = life.proc.wait(timeout=30)
            life.t1, life.wall1 = time.monotonic(), time.time()
            life.end_how = "hung" if life.hung else how
            with self.lock:
                life.ending = True
                self.current = None
        if life.reader is not None:
            life.reader.join(timeout=30)
        if how == "exit":  # its poller stopped after the last node, not at the exit
            life.poll_end = life.printed[-1].t if life.printed else life.t0
        self.trace(f"life {life.index}: ended by {life.end_how}, rc {life.rc}")
        if life.hung:
            return
        # SIGTERM: 143, an interrupted run; a stop command or a spent budget: 0
        expect = {"kill": -signal.SIGKILL, "term": 128 + signal.SIGTERM}.get(how, 0)
        if life.rc != expect:
            tail = _tail(life.stderr)
            self.violate("engine", f"life {life.index} ({how}) exited {life.rc}: {tail}")
        if how in ("stop", "term", "exit"):
            ends = [m for line in life.lines if (m := FINISH_LINE.match(line))]
            want = "finished" if how == "exit" else "stopped"
            if not ends or ends[-1].group(1) != want:
                self.violate("engine", f"life {life.index} ({how}): no 'run {want}' line")

    def wait_exit(self, life: Life, timeout: float) -> bool:
        """Wait for the engine to exit; a hung one is dumped and killed. False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if life.proc.poll() is not None:
                return True
            why = self.hung(life)
            if why:
                self.on_hang(life, why)
                return True
            time.sleep(0.1)
        return False

    def hung(self, life: Life) -> str:
        """Why the engine looks hung ("" if it does not): its heartbeat stopped moving."""
        now = time.monotonic()
        with self.lock:
            if life.proc.poll() is not None:
                return ""
            if life.first_beat is None:
                waited = now - life.t0
                return f"no heartbeat {waited:.0f}s after its start" if waited > 60 else ""
            stale = now - life.beat_moved
        return f"heartbeat stuck for {stale:.0f}s" if stale > self.s.hang_s else ""

    def on_hang(self, life: Life, why: str) -> None:
        life.hung = why
        life.proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack to stderr
        try:
            life.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            life.proc.kill()
        stacks = _stacks(life.stderr)
        self.violate("hung", f"life {life.index} (pid {life.proc.pid}): {why}; {stacks}")

    # ---------------------------------------------------------------- commands
    def send(self, kind: str, arg: str, target: str, own: bool = False) -> Sent | None:
        """Write a command through ``engine.store.steer.send_command``: in this process (which holds
        the TUI reader's connection open), or with ``own`` from a one-shot process."""
        with self.send_lock:
            return self._send_locked(kind, arg, target, own)

    def _send_locked(self, kind: str, arg: str, target: str, own: bool = False) -> Sent | None:
        with self.lock:
            life = self.current
        alive = life is not None and life.proc.poll() is None
        ts = time.time()
        try:
            if own:
                done = subprocess.run(
                    [sys.executable, "-c", WRITER, str(self.run), kind, arg],
                    cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                if done.returncode != 0:
                    raise RuntimeError(done.stderr.strip()[-300:])
                command_id = int(done.stdout)
            else:
                command_id = send_command(self.run, kind, arg)
        except Exception as exc:  # noqa: BLE001 - a TUI write that fails is a finding
            self.violate("steer", f"send_command({kind} {arg!r}) failed: {exc}")
            return None
        sent = Sent(command_id, kind, arg, target, time.monotonic(), ts, None)
        sent.life = life.index if alive and life is not None else None
        with self.lock:
            self.sent.append(sent)
        where = f"life {sent.life}" if sent.life is not None else "no engine"
        how = " from its own process" if own else ""
        self.trace(f"command #{command_id} {kind} {arg!r} ({target}){how} -> {where}")
        return sent

    def node_ids(self) -> dict[int, tuple[int, str]]:
        """id -> (step, status) as a fresh reader sees them now."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return {i: (s, st) for i, s, st in conn.execute("SELECT id, step, status FROM nodes")}
        finally:
            conn.close()

    def prune_target(self, rng: random.Random) -> tuple[str, str]:
        """(arg, target class) of a random prune."""
        nodes = self.node_ids()
        by: dict[str, list[int]] = {"inflight": [], "finished": [], "pruned": [], "root": []}
        for node_id, (step, status) in nodes.items():
            if step == 0:
                by["root"].append(node_id)
            elif status in ("pending", "running"):
                by["inflight"].append(node_id)
            elif status == "pruned":
                by["pruned"].append(node_id)
            else:
                by["finished"].append(node_id)
        weights = {"inflight": 4, "finished": 3, "pruned": 1, "root": 1, "unknown": 1, "bad": 1}
        if len(by["pruned"]) > 0.3 * max(1, len(nodes)):  # keep parents to sample from
            weights["finished"] = 0
        kinds = [k for k in weights if k in ("unknown", "bad") or by.get(k)]
        target = rng.choices(kinds, [weights[k] for k in kinds])[0]
        if target == "unknown":
            return str(max(nodes, default=0) + 1000), target
        if target == "bad":
            return rng.choice(["abc", "#", "1.5", "node"]), target
        node_id = rng.choice(sorted(by[target]))
        return (f"#{node_id}" if rng.random() < 0.5 else str(node_id)), target

    def steer_loop(self) -> None:
        rng = random.Random(self.s.seed * 7919 + 1)
        while not self.stop_event.wait(min(5.0, rng.expovariate(1 / self.s.steer_every))):
            action = rng.choices(["pause", "prune"], [1, 2])[0]
            hold = rng.uniform(0.2, 3.0)
            own = rng.random() < self.s.own_process
            prune_rng = random.Random(rng.random())
            with self.steer_gate:
                if action == "prune":
                    try:
                        arg, target = self.prune_target(prune_rng)
                    except sqlite3.Error as exc:
                        self.violate("reader", f"steering read failed: {exc}")
                        continue
                    self.send("prune", arg, target, own)
                    continue
                self.send("pause", "", "pause", own)
                self.stop_event.wait(hold)
                self.send("resume", "", "resume", own)

    # ----------------------------------------------------------------- readers
    def tui_loop(self) -> None:
        """The readers: a TUI that comes and goes (attached U(3, 15) s, then detached U(1, 8)
        s: while it is away no connection of this process holds the database open), and a
        brand-new read-only connection every tick, which also watches the heartbeat."""
        rng = random.Random(self.s.seed * 7919 + 3)
        reader: RunReader | None = None
        poller: Poller | None = None
        attached, until = True, time.monotonic() + rng.uniform(3, 15)
        last = False  # one more read after the stop: it began after every print
        while not last:
            last = self.stop_event.is_set()
            started = time.monotonic()
            try:
                if poller is None and (attached or last):
                    reader = RunReader(self.run)
                    poller = Poller(reader)
                    with self.lock:
                        self.tui_since = time.monotonic()
                if poller is not None:
                    t0 = time.monotonic()
                    tick = poller.tick()
                    seen = {i for i, row in poller.pop.rows.items() if row.status in FINISHED}
                    self._saw("tui", seen, t0, time.monotonic())
                    self._check_beat(tick.meta, tick.summary.engine.state)
                t0 = time.monotonic()
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
                try:
                    marks = ",".join("?" * len(FINISHED))
                    sql = f"SELECT id FROM nodes WHERE status IN ({marks})"
                    seen = {r[0] for r in conn.execute(sql, list(FINISHED))}
                    meta = conn.execute("SELECT value FROM meta WHERE key = 'engine'").fetchone()
                finally:
                    conn.close()
                self._saw("fresh", seen, t0, time.monotonic())
                self._check_beat({"engine": json.loads(meta[0]) if meta else {}}, None)
                with self.lock:
                    self.report.ticks += 1
            except Exception as exc:  # noqa: BLE001 - the TUI must survive: a finding
                self.violate("reader", f"TUI read failed: {type(exc).__name__}: {exc}")
                if reader is not None:
                    reader.close()
                reader = poller = None
            if time.monotonic() > until:
                attached = not attached
                until = time.monotonic() + (rng.uniform(3, 15) if attached else rng.uniform(1, 8))
                if not attached and reader is not None:
                    reader.close()
                    reader = poller = None
            if not last:
                self.stop_event.wait(max(0.0, self.s.tick - (time.monotonic() - started)))
        if reader is not None:
            reader.close()

    def _saw(self, name: str, seen: set[int], t0: float, t1: float) -> None:
        """A read that began at ``t0`` and ended at ``t1`` returned the finished ids ``seen``."""
        with self.lock:
            self.report.read_s[name] = max(self.report.read_s[name], t1 - t0)
            pending = self.unseen[name]
            for node_id, p in list(pending.items()):
                if node_id in seen:  # lag: until a read that returned it began
                    # (the TUI from when it was attached, if it was away at the print)
                    since = max(p.t, self.tui_since) if name == "tui" else p.t
                    lag = max(0.0, t0 - since)
                    self.report.lag[name] = max(self.report.lag[name], lag)
                    del pending[node_id]
                    if lag > self.s.lag_limit:
                        self.violate(
                            "lag", f"{name} reader saw node #{node_id} {lag:.2f}s after its print"
                        )
                elif p.t < t0 and (name, node_id) not in self.missed:
                    self.missed.add((name, node_id))
                    self.violate(
                        "lag",
                        f"{name} reader began {t0 - p.t:.2f}s after node #{node_id} was "
                        "printed finished and did not see it",
                    )

    def _check_beat(self, meta: dict[str, Any], tui_state: str | None) -> None:
        info = meta.get("engine") if isinstance(meta.get("engine"), dict) else {}
        now = time.time()
        with self.lock:
            life = self.current
            if life is None or info.get("pid") != life.proc.pid:
                return
            beat = info.get("heartbeat")
            if beat != life.beat:
                life.beat, life.beat_moved = beat, time.monotonic()
            if life.ending:
                return
            state = str(info.get("state", ""))
            if life.first_beat is None:
                life.first_beat, life.first_state = time.monotonic(), state
                paused = any(c.life == life.index and c.kind == "pause" for c in self.sent)
                if state == "paused" and not paused:
                    self.violate("resume", f"life {life.index} started paused")
            if state not in LIVE or not isinstance(beat, int | float):
                return
            age = now - beat
            self.report.beat_age = max(self.report.beat_age, age)
            if age > HEARTBEAT_STALE_S:
                self.violate(
                    "heartbeat",
                    f"life {life.index} ({state}): heartbeat {age:.1f}s old",
                    key=f"beat:{life.index}",
                )
            # (An engine that finished since the tick read its meta has let the lock go.)
            if tui_state == "not running" and engine_alive(self.run):
                self.violate(
                    "heartbeat",
                    f"life {life.index} ({state}): the TUI says 'not running'",
                    key=f"tui-state:{life.index}",
                )

    def status_loop(self) -> None:
        rng = random.Random(self.s.seed * 7919 + 2)
        while not self.stop_event.wait(rng.uniform(0.4, 1.6) * self.s.status_every):
            with self.lock:
                printed = len({p.node for p in self.printed if p.step >= 1})
            t0 = time.monotonic()
            done = subprocess.run(
                [*self.s.engine_cmd, "status", str(self.run), "--json"],
                cwd=REPO,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            took = time.monotonic() - t0
            with self.lock:
                self.report.status_runs += 1
                self.report.status_max_s = max(self.report.status_max_s, took)
            if done.returncode != 0:
                self.violate("status", f"status exited {done.returncode}: {done.stderr[-300:]}")
                continue
            try:
                steps_done = int(json.loads(done.stdout)["steps_done"])
            except (ValueError, KeyError, TypeError) as exc:
                self.violate("status", f"status --json unreadable: {exc}: {done.stdout[:200]}")
                continue
            if steps_done < printed:
                self.violate(
                    "status",
                    f"status counted {steps_done} finished steps, {printed} were "
                    "printed before it started",
                )

    # ------------------------------------------------------------------ checks
    def read_db(self) -> tuple[dict[int, dict], dict[int, tuple], str]:
        """(nodes by id, command rows by id, integrity_check) with a fresh connection."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            nodes = {
                r["id"]: dict(r)
                for r in conn.execute("SELECT id, step, status, created_at, finished_at FROM nodes")
            }
            commands = {
                r[0]: tuple(r[1:])
                for r in conn.execute(
                    "SELECT id, kind, arg, status, handled_at, result, ts FROM commands"
                )
            }
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
        return nodes, commands, integrity

    def check(self, final: bool = False) -> dict[int, dict]:
        """Check the database while no engine runs; returns the nodes."""
        try:
            nodes, commands, integrity = self.read_db()
        except sqlite3.Error as exc:
            self.violate("integrity", f"the database cannot be read: {exc}")
            return {}
        if integrity != "ok":
            self.violate("integrity", f"integrity_check: {integrity}")
        with self.lock:
            printed = list(self.printed)
            sent = list(self.sent)
            lives = list(self.lives)
        self._check_printed(printed, nodes)
        steps = Counter(n["step"] for n in nodes.values())
        for step, count in sorted(steps.items()):
            if count > 1:
                ids = sorted(i for i, n in nodes.items() if n["step"] == step)
                self.violate("steps", f"step {step} has {count} nodes: {ids}")
        self._check_commands(sent, commands, lives, final)
        return nodes

    def _check_printed(self, printed: list[Printed], nodes: dict[int, dict]) -> None:
        seen_ids: dict[int, Printed] = {}
        seen_steps: dict[int, Printed] = {}
        for p in printed:
            if p.node in seen_ids:
                self.violate("printed", f"node #{p.node} printed finished twice")
            if p.step in seen_steps and seen_steps[p.step].node != p.node:
                other = seen_steps[p.step].node
                self.violate("printed", f"step {p.step} printed for #{other} and #{p.node}")
            seen_ids[p.node], seen_steps[p.step] = p, p
            node = nodes.get(p.node)
            if node is None:
                self.violate(
                    "lost",
                    f"node #{p.node} (step {p.step}, life {p.life}) printed "
                    "finished, not in the database",
                )
            elif node["status"] not in FINISHED:
                self.violate(
                    "lost",
                    f"node #{p.node} (step {p.step}) printed finished, "
                    f"in the database as {node['status']}",
                )
            elif node["step"] != p.step:
                self.violate(
                    "lost", f"node #{p.node} printed at step {p.step}, stored at {node['step']}"
                )
        with self.lock:
            self.report.printed = len(seen_ids)
            self.report.found = sum(
                1 for i in seen_ids if nodes.get(i, {}).get("status") in FINISHED
            )

    def _check_commands(
        self, sent: list[Sent], rows: dict[int, tuple], lives: list[Life], final: bool
    ) -> None:
        answered = expired = rejected = 0
        for c in sent:
            row = rows.get(c.id)
            if row is None:
                self.violate("command", f"command #{c.id} {c.kind} {c.arg!r}: row lost")
                continue
            kind, arg, status, handled_at, result, ts = row
            if (kind, arg) != (c.kind, c.arg):
                self.violate("command", f"command #{c.id}: row says {kind} {arg!r}")
            if status == "new":
                if final or not self._may_be_unanswered(c, lives):
                    where = "no engine" if c.life is None else f"life {c.life}"
                    self.violate(
                        "command", f"command #{c.id} {c.kind} {c.arg!r} ({where}) left unanswered"
                    )
                continue
            answer = (status, handled_at, result)
            if c.answer is None:
                c.answer = answer
            elif c.answer != answer:
                self.violate("command", f"command #{c.id} answered twice: {c.answer} then {answer}")
            answered += 1
            if status not in ("handled", "rejected") or handled_at is None or not result:
                self.violate("command", f"command #{c.id}: answer {answer}")
                continue
            if result == EXPIRED:
                expired += 1
                if c.life is not None and not self._may_be_unanswered(c, lives):
                    self.violate(
                        "command",
                        f"command #{c.id} {c.kind} (life {c.life}) was "
                        "not answered by its engine but expired by the next",
                    )
                continue
            if c.life is None:
                self.violate(
                    "command",
                    f"command #{c.id} {c.kind} {c.arg!r} written while no "
                    f"engine ran was answered {status}: {result!r}",
                )
                continue
            if status == "rejected":
                rejected += 1
            latency = handled_at - ts
            beat = lives[c.life].first_beat
            if beat is None or c.t < beat:  # written while the engine was starting
                latency = 0.0
            with self.lock:
                self.report.answer_s = max(self.report.answer_s, latency)
            if latency > self.s.answer_limit:
                self.violate(
                    "command",
                    f"command #{c.id} {c.kind} answered {latency:.2f}s after it was written",
                )
            want = _expected(c)
            if not (status == want[0] and any(result.startswith(w) for w in want[1])):
                self.violate(
                    "command",
                    f"command #{c.id} {c.kind} {c.arg!r} ({c.target}): "
                    f"{status} {result!r}, expected {want[0]} {want[1]}",
                )
        with self.lock:
            self.report.sent = len(sent)
            self.report.answered = answered
            self.report.expired = expired
            self.report.rejected = rejected
            self.report.dead_sent = sum(1 for c in sent if c.life is None)

    def _may_be_unanswered(self, c: Sent, lives: list[Life]) -> bool:
        """Whether the life a command was written to may have left it to the next start:
        written before that engine was seen beating, or too close to its end."""
        if c.life is None:
            return True
        life = lives[c.life]
        if life.first_beat is None or c.t < life.first_beat:
            return True
        return life.poll_end is None or life.poll_end - c.t < self.s.answer_limit

    def check_pauses(self, nodes: dict[int, dict]) -> None:
        """A paused engine starts no new node: none is created between a pause's answer and
        the writing of the next resume (or the end of that engine life)."""
        with self.lock:
            sent = sorted(self.sent, key=lambda c: c.id)
            lives = list(self.lives)
        for life in lives:
            mine = [
                c
                for c in sent
                if c.kind in ("pause", "resume")
                and c.answer
                and c.answer[0] == "handled"
                and c.answer[2] != EXPIRED
                and c.life == life.index
            ]
            end = life.wall1 or time.time()
            for i, c in enumerate(mine):
                if c.kind != "pause":
                    continue
                resume = next((r for r in mine[i + 1 :] if r.kind == "resume"), None)
                since, until = c.answer[1], min(resume.ts if resume else end, end)
                leaked = [
                    f"#{n}"
                    for n, node in nodes.items()
                    if node["step"] >= 1 and since < node["created_at"] < until
                ]
                if leaked:
                    self.violate(
                        "pause",
                        f"life {life.index}: node(s) {', '.join(leaked)} created while paused "
                        f"(pause #{c.id} answered, {until - since:.2f}s before the resume)",
                    )

    def check_prunes(self, nodes: dict[int, dict]) -> None:
        """A node whose prune was answered 'pruned node #N' ends pruned, unless its engine
        was killed before the prune reached the database."""
        with self.lock:
            sent = list(self.sent)
            lives = list(self.lives)
        for c in sent:
            if c.kind != "prune" or not c.answer or not c.answer[2].startswith("pruned node"):
                continue
            node_id = int(c.arg.lstrip("#"))
            status = nodes.get(node_id, {}).get("status")
            with self.lock:
                self.report.prunes += 1
            if status == "pruned":
                continue
            life = lives[c.life] if c.life is not None else None
            # Lost with its engine: still unfinished when that engine ended (in flight, the
            # prune lives in memory until the node's cancellation commits it).
            ended = life is not None and life.end_how in ("kill", "stop", "term")
            if ended and life.snapshot.get(node_id) in ("pending", "running"):
                how = "kill" if life.end_how == "kill" else "stop"
                with self.lock:
                    self.report.prunes_lost[how] += 1
                self.trace(
                    f"prune #{c.id} of #{node_id} lost with life {life.index} "
                    f"({life.end_how}); it ended {status}"
                )
                continue
            self.violate(
                "prune",
                f"command #{c.id} answered 'pruned node #{node_id}', the node ended {status}",
            )
            if c.life == self.final_index:
                self.ledger_misses += 1

    def check_final(self, steps: int, nodes: dict[int, dict]) -> None:
        finished = sorted(
            n["step"] for n in nodes.values() if n["step"] >= 1 and n["status"] in FINISHED
        )
        over = len(finished) - steps
        if finished == list(range(1, len(finished) + 1)) and 0 < over <= self.ledger_misses:
            # A prune lost in `post` (see check_prunes) leaves its node out of the engine's
            # count, so the last life runs one step more for each: the same engine issue.
            self.violate(
                "prune",
                f"the last life ran {over} step(s) beyond its budget of {steps}, one for each "
                "node it finished without counting (pruned while in post)",
            )
        elif finished != list(range(1, steps + 1)):
            extra = sorted(set(finished) - set(range(1, steps + 1)))
            gaps = sorted(set(range(1, steps + 1)) - set(finished))
            self.violate(
                "budget",
                f"finished steps are not 1..{steps} once each: "
                f"{len(finished)} finished, beyond {extra[:10]}, missing {gaps[:10]}",
            )
        unfinished = sorted(i for i, n in nodes.items() if n["status"] not in FINISHED)
        if unfinished:
            self.violate("budget", f"nodes left unfinished after the last life: {unfinished}")
        with self.lock:
            self.report.final_steps = len(finished)
        markers = (
            list((self.run / "evaluators").glob("*")) if (self.run / "evaluators").exists() else []
        )
        if markers:
            self.violate("orphans", f"evaluator markers left: {[m.name for m in markers]}")
        left = _processes_under(self.run)
        if left:
            self.violate("orphans", f"processes still working in the run dir: {left}")
        log = self.run / "engine.log"
        errors = (
            [
                ln
                for ln in log.read_text(errors="replace").splitlines()
                if " ERROR " in ln or "Traceback" in ln
            ]
            if log.exists()
            else []
        )
        for line in errors[:5]:
            self.violate("log", line[:300])

    # -------------------------------------------------------------------- main
    def wait_printed(self, life: Life, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(life.printed) >= count:
                return True
            if life.proc.poll() is not None or self.hung(life):
                return False
            time.sleep(0.05)
        return False

    def wait_answer(self, command: Sent | None, timeout: float) -> str:
        if command is None:
            return ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
            try:
                row = conn.execute(
                    "SELECT status FROM commands WHERE id = ?", (command.id,)
                ).fetchone()
            finally:
                conn.close()
            if row and row[0] != "new":
                return row[0]
            time.sleep(0.05)
        return "new"

    def one_round(self, life: Life, first: bool) -> str:
        """Let ``life`` run, then end it with a fault and check the database. Returns
        "faulted", "spent" (it spent a fixed ``--steps`` by itself) or "died" (a violation)."""
        rng = self.rng
        duration = rng.uniform(*self.s.life)
        early = not first and rng.random() < self.s.early_kill
        how = "kill"
        if not early and rng.random() < self.s.clean_stop:
            how = rng.choice(["stop", "term"])
        paused = how == "kill" and not early and rng.random() < self.s.paused_kill
        if early:
            duration = rng.uniform(0.2, 2.5)
        if first and not self.wait_printed(life, 3, 120):
            self.violate(
                "engine", f"the first life printed {len(life.printed)} nodes: {_tail(life.stderr)}"
            )
        with self.lock:
            self.report.rounds += 1
        while time.monotonic() < life.t0 + duration and life.proc.poll() is None:
            if self.hung(life) or self.failing():
                break
            time.sleep(0.05)
        if life.proc.poll() is not None or self.hung(life):  # spent a fixed budget, or died
            self.say(f"life {life.index}: {len(life.printed)} nodes, ended by itself")
            self.end_life(life, "exit")
            self.check()
            return "spent" if life.rc == 0 and not life.hung else "died"
        gate = False
        if paused:
            self.steer_gate.acquire()
            gate = True
            answer = self.wait_answer(self.send("pause", "", "pause"), 5)
            if answer != "handled":
                self.violate("command", f"life {life.index}: the pause before a kill was {answer}")
            time.sleep(rng.uniform(0.3, 1.5))
        self.say(
            f"life {life.index}: {len(life.printed)} nodes, ending by {how}"
            + (" (startup)" if early else " (paused)" if paused else "")
        )
        self.end_life(life, how)
        with self.lock:
            self.report.kills += how == "kill"
            self.report.early_kills += early
            self.report.paused_kills += paused
            self.report.stops += how == "stop"
            self.report.terms += how == "term"
        for _ in range(rng.choice([0, 0, 1, 2])):  # commands written while no engine runs
            kind = rng.choice(["pause", "resume", "prune"])
            arg, target = self.prune_target(rng) if kind == "prune" else ("", kind)
            self.send(kind, arg, target)
        time.sleep(rng.uniform(0.0, 1.0))
        nodes = self.check()
        life.snapshot = {i: n["status"] for i, n in nodes.items()}
        self.gated = gate  # the next engine must run although this one was paused
        return "faulted"

    def resume_life(self, steps: int) -> Life:
        life = self.start_life(steps)
        if self.gated:
            self.gated = False
            if not self.wait_printed(life, 1, 60):
                self.violate(
                    "resume",
                    f"life {life.index} after a kill while paused printed "
                    "no node within 60s (it did not start running)",
                )
            self.steer_gate.release()
        return life

    def main(self) -> Report:
        s = self.s
        deadline = self.t_start + s.minutes * 60 - max(20.0, s.minutes * 6)  # the last life's
        budget = s.steps or 10**6
        self.gated = False
        threads = [
            threading.Thread(target=self.steer_loop, name="steer", daemon=True),
            threading.Thread(target=self.tui_loop, name="tui", daemon=True),
            threading.Thread(target=self.status_loop, name="status", daemon=True),
        ]
        life = self.start_life(budget)
        if not self.wait_printed(life, 1, 120):
            self.end_life(life, "kill")
            raise SystemExit(f"the engine did not start: {_tail(life.stderr)}")
        for t in threads:
            t.start()
        first, spent, deaths = True, False, 0
        while True:
            outcome = self.one_round(life, first)
            first, spent = False, outcome == "spent"
            self.final_index = life.index if spent else -1
            deaths = deaths + 1 if outcome == "died" else 0
            if deaths >= 3:
                return self.abort(threads, "the engine died 3 times in a row")
            if self.failing():
                return self.abort(threads, "stopped at the first violation (--fail-fast)")
            if spent or time.monotonic() > deadline:
                break
            life = self.resume_life(budget)
        if not spent:  # the last life: no faults, the budget is spent
            if not s.steps:
                done = sum(
                    1
                    for n in self.read_db()[0].values()
                    if n["step"] >= 1 and n["status"] in FINISHED
                )
                budget = done + s.tail
            life = self.resume_life(budget)
            self.final_index = life.index
            self.say(f"life {life.index}: the last one, runs to {budget} steps")
            self.end_life(life, "exit")
            with self.lock:
                self.report.rounds += 1
        self.stop_event.set()
        for t in threads:
            t.join(timeout=150)
        # A last start on the finished run: nothing to do but expire what was left.
        closing = self.start_life(budget)
        self.end_life(closing, "exit")
        if closing.printed:
            self.violate(
                "budget", f"a start on the finished run ran {len(closing.printed)} more node(s)"
            )
        nodes = self.check(final=True)
        self._check_readers()
        self.check_pauses(nodes)
        self.check_prunes(nodes)
        self.check_final(budget, nodes)
        self.report.wall_s = time.monotonic() - self.t_start
        self.trace_file.close()
        return self.report

    def failing(self) -> bool:
        with self.lock:
            return self.s.fail_fast and bool(self.report.violations)

    def abort(self, threads: list[threading.Thread], why: str) -> Report:
        """Stop injecting faults where the run cannot go on; what was found so far stands."""
        self.say(f"aborted: {why}")
        if not self.failing():
            self.violate("engine", f"aborted: {why}")
        self.report.aborted = why
        self.stop_event.set()
        if self.gated:
            self.steer_gate.release()
        for t in threads:
            t.join(timeout=150)
        self.check()
        self.report.wall_s = time.monotonic() - self.t_start
        self.trace_file.close()
        return self.report

    def _check_readers(self) -> None:
        with self.lock:
            for name, pending in self.unseen.items():
                for node_id in sorted(pending):
                    self.violate("lag", f"the {name} reader never saw node #{node_id}")


def _expected(c: Sent) -> tuple[str, tuple[str, ...]]:
    """The answer a live engine owes a command: (status, result prefixes)."""
    if c.kind == "pause":
        return "handled", ("paused",)
    if c.kind == "resume":
        return "handled", ("resumed",)
    if c.kind == "stop":
        return "handled", ("stopping",)
    node = c.arg.lstrip("#")
    return {
        "root": ("rejected", ("the initial program cannot be pruned",)),
        "unknown": ("rejected", (f"no node #{node}",)),
        "bad": ("rejected", ("prune needs a node id",)),
        "pruned": ("handled", (f"node #{node} was already pruned",)),
    }.get(c.target, ("handled", (f"pruned node #{node}", f"node #{node} was already pruned")))


def _tail(path: Path | None, chars: int = 400) -> str:
    if path is None or not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace")[-chars:].strip().splitlines()[-4:])


def _stacks(path: Path | None) -> str:
    """The innermost frames of each thread in a faulthandler dump ("*": the thread that took
    the signal), threads separated by " | "."""
    if path is None or not path.exists():
        return "no stacks"
    threads: list[list[str]] = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("Thread 0x", "Current thread 0x")):
            threads.append(["*"] if line.startswith("Current") else [])
        elif threads and len(threads[-1]) < 3:
            match = re.search(r'File "([^"]+)", line (\d+) in (\S+)', line)
            if match:
                threads[-1].append(f"{Path(match[1]).name}:{match[2]} {match[3]}")
    if not threads:
        return f"no stacks in {path.name}"
    return f"stacks in {path.name}: " + " | ".join(" < ".join(t) for t in threads if t)


def _processes_under(run: Path) -> list[str]:
    """Processes (not this one) whose working directory is inside the run directory."""
    found = []
    root = str(run.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(entry / "cwd")
            if cwd == root or cwd.startswith(root + "/"):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
                found.append(f"{entry.name} {cmd}")
    return found


def table(settings: Settings, r: Report) -> str:
    lag, minutes = r.lag, settings.minutes
    rows = [
        ("seed", f"{settings.seed}  (replay: --seed {settings.seed} --minutes {minutes:g})"),
        (
            "engine lives",
            f"{r.rounds}  (ABORTED: {r.aborted})"
            if r.aborted
            else f"{r.rounds}  (the last one ran the budget out, plus a closing start)",
        ),
        ("kill -9", f"{r.kills}  ({r.early_kills} during startup, {r.paused_kills} while paused)"),
        ("clean stops", f"{r.stops + r.terms}  ({r.stops} stop command, {r.terms} SIGTERM)"),
        (
            "commands sent/answered",
            f"{r.sent}/{r.answered}  ({r.dead_sent} with no engine, "
            f"{r.expired} expired, {r.rejected} rejected)",
        ),
        ("nodes printed/found", f"{r.printed}/{r.found}  (final budget {r.final_steps} steps)"),
        (
            "prunes done",
            f"{r.prunes}  (lost with the engine: {r.prunes_lost['kill']} by kill -9, "
            f"{r.prunes_lost['stop']} by a clean stop)",
        ),
        ("status runs", f"{r.status_runs}  (slowest {r.status_max_s:.2f}s)"),
        ("TUI ticks", f"{r.ticks}"),
        ("max reader lag", f"TUI poller {lag['tui']:.2f}s, fresh connection {lag['fresh']:.2f}s"),
        (
            "slowest read",
            f"TUI tick {r.read_s['tui']:.2f}s, fresh connection {r.read_s['fresh']:.2f}s",
        ),
        ("max heartbeat age", f"{r.beat_age:.2f}s"),
        ("max command answer", f"{r.answer_s:.2f}s"),
        ("violations", f"{len(r.violations)}"),
        *([("allowed (--allow)", f"{len(r.allowed)}")] if settings.allow else []),
        ("wall time", f"{r.wall_s:.0f}s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    for label, found in (("violations", r.violations), ("allowed", r.allowed)):
        kinds = Counter(kind for kind, _ in found)
        if kinds:
            counts = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
            lines.append(f"{label} by kind: {counts}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.15, help="evaluation seconds (mean)")
    parser.add_argument("--jitter", type=float, default=0.8, help="delay x U(1-J, 1+J)")
    parser.add_argument("--fail", type=float, default=0.05, help="share of failing candidates")
    parser.add_argument(
        "--life",
        type=float,
        nargs=2,
        default=[6.0, 20.0],
        metavar=("A", "B"),
        help="an engine lives U(A, B) seconds before its fault",
    )
    parser.add_argument("--steer-every", type=float, default=1.0, help="mean s between commands")
    parser.add_argument(
        "--own-process",
        type=float,
        default=0.3,
        help="share of steering writes made from a one-shot process of their own",
    )
    parser.add_argument("--status-every", type=float, default=2.5, help="mean s between status")
    parser.add_argument("--steps", type=int, default=0, help="the run's budget (0: see the doc)")
    parser.add_argument("--tail", type=int, default=12, help="steps of the last life (--steps 0)")
    parser.add_argument("--lag-limit", type=float, default=1.0)
    parser.add_argument("--config", type=Path, help="run configuration (YAML) of the run")
    parser.add_argument("--keep", type=Path, help="keep the run and the trace in this directory")
    parser.add_argument("--quiet", action="store_true", help="only violations and the table")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first violation")
    parser.add_argument(
        "--allow",
        nargs="*",
        default=[],
        metavar="KIND",
        help="violation kinds to report without failing (a known engine issue)",
    )
    args = parser.parse_args(argv)
    return Settings(
        minutes=args.minutes,
        seed=args.seed,
        workers=args.workers,
        delay=args.delay,
        jitter=args.jitter,
        fail=args.fail,
        life=tuple(args.life),
        steer_every=args.steer_every,
        own_process=args.own_process,
        status_every=args.status_every,
        steps=args.steps,
        tail=args.tail,
        lag_limit=args.lag_limit,
        workdir=args.keep,
        quiet=args.quiet,
        allow=frozenset(args.allow),
        fail_fast=args.fail_fast,
        config=args.config.resolve() if args.config else None,
    )


def run_soak(settings: Settings) -> tuple[Report, Path]:
    """Run the soak; returns its report and the directory holding the run and the trace."""
    soak = Soak(settings)
    try:
        return soak.main(), soak.root
    finally:
        soak.stop_event.set()
        with soak.lock:
            current = soak.current
        if current is not None and current.proc.poll() is None:
            current.proc.kill()
            current.proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    print(
        f"soak: seed {settings.seed}, {settings.minutes:g} min, workers {settings.workers}, "
        f"evaluations {settings.delay}s x U(1 +- {settings.jitter}), {settings.fail:.0%} fail, "
        f"engine code from {REPO}",
        flush=True,
    )
    report, root = run_soak(settings)
    print()
    print(table(settings, report))
    if report.violations:
        print(f"\nkept for inspection: {root} (trace.log, run/, engine-*.stderr)")
        return 1
    if settings.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    # A SIGTERM (a timeout) unwinds like Ctrl-C, so that the engine started last is killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
