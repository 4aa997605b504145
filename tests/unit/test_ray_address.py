"""``address: auto`` finds a Ray cluster by Ray's own rule, without importing Ray (issue 21)."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.execution.ray_backend import find_auto_cluster


def _proc(root: Path, pid: int, *argv: str) -> None:
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")


def test_no_address_no_file_no_raylet_is_no_cluster(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _proc(proc, 10, "/usr/bin/python3", "-m", "engine.cli", "--gcs-address=1.2.3.4:6379")
    assert find_auto_cluster({"RAY_TMPDIR": str(tmp_path)}, proc) is None
    assert find_auto_cluster({"RAY_TMPDIR": str(tmp_path), "RAY_ADDRESS": ""}, proc) is None


def test_ray_address_wins(tmp_path: Path) -> None:
    env = {"RAY_ADDRESS": "ray://head:10001", "RAY_TMPDIR": str(tmp_path)}
    assert find_auto_cluster(env, tmp_path / "proc") == "ray://head:10001"


def test_the_address_file_of_ray_start_in_rays_temp_dir(tmp_path: Path) -> None:
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("10.0.0.1:6379\n")
    empty = tmp_path / "proc"
    assert find_auto_cluster({"RAY_TMPDIR": str(tmp_path)}, empty) == "10.0.0.1:6379"
    assert find_auto_cluster({"TMPDIR": str(tmp_path)}, empty) == "10.0.0.1:6379"
    other = tmp_path / "elsewhere"  # RAY_TMPDIR comes before TMPDIR, as in Ray
    assert find_auto_cluster({"RAY_TMPDIR": str(other), "TMPDIR": str(tmp_path)}, empty) is None


def test_a_raylet_process_is_a_cluster(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _proc(proc, 7, "/x/ray/core/src/ray/raylet/raylet", "--gcs-address=10.0.0.2:6379", "--a=b")
    assert find_auto_cluster({"RAY_TMPDIR": str(tmp_path)}, proc) == "10.0.0.2:6379"


def test_the_probe_never_imports_ray(tmp_path: Path) -> None:
    before = "ray" in sys.modules
    find_auto_cluster({"RAY_TMPDIR": str(tmp_path)}, tmp_path / "proc")
    assert ("ray" in sys.modules) == before
