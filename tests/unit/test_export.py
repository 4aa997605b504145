"""asi-evolve export: CSV, JSON and a self-contained HTML report of a run."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import cli


def test_export_writes_every_node_and_a_report(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "6").returncode == 0
    out = tmp_path / "share"
    result = cli("export", str(run), "-o", str(out))
    assert result.returncode == 0, result.stderr
    with (out / "nodes.csv").open() as f:
        table = list(csv.DictReader(f))
    data = json.loads((out / "nodes.json").read_text())
    assert len(table) == len(data) == 7
    assert [r["step"] for r in data] == list(range(7))
    page = (out / "report.html").read_text()
    # Self-contained: nothing is loaded from elsewhere (a config's base_url may be shown).
    assert "<script" not in page
    assert not re.findall(r'(?:src|href)="(?!#)', page)
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    ET.fromstring(svg)  # well-formed
    assert "Lineage of the best node" in page and page.count("<tr") >= 7 + 2
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    bad = cli("export", str(run), "-o", str(not_dir))
    assert bad.returncode == 2 and "is not a directory" in bad.stderr
