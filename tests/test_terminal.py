"""The terminal as a researcher uses it (issue 17), through the real CLI in a subprocess."""

from __future__ import annotations

from pathlib import Path

from tests.cli_subprocess import run_one


def _header(stdout: str, title: str = "Leaderboard: fictitious-facts") -> list[str]:
    """The metric column names (arrow and n dropped) of the table titled `title`."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    row = next(line for line in lines[start:] if "┃ model" in line)
    cells = [c.strip() for c in row.strip("┃ ").split("┃")]
    return [c.split(" ")[0] for c in cells[2:]]


def test_terminal_shows_the_metrics_asked_for_sorted_like_the_files(toy_config, write_config, tmp_path: Path) -> None:
    cfg = write_config(toy_config(metrics=["probability@forget", "forget_quality"]))
    out = run_one(["run", str(cfg)], env={"COLUMNS": "250"})
    assert out.code == 0, out.stderr[-2000:]
    assert _header(out.stdout) == ["probability@forget", "forget_quality"]
    assert "Sorted by probability@forget" in out.stdout
    assert "Showing 2 of 3 metrics (those asked for)" in out.stdout  # truth_ratio came as a dependency
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Sorted by probability@forget" in md

    again = run_one(["leaderboard", str(tmp_path / "out"), "--sort-by", "forget_quality"], env={"COLUMNS": "250"})
    assert again.code == 0, again.stderr[-2000:]
    assert _header(again.stdout) == ["forget_quality", "probability@forget"]
    assert "Sorted by forget_quality" in again.stdout
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Sorted by forget\\_quality" in md
    assert md.index("forget\\_quality ↑") < md.index("probability@forget ↓")  # sort column first in the file too
