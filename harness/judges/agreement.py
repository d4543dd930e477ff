"""How far to trust a judge: its verdicts against human labels (accuracy, Cohen's kappa, confusions).

The labelled file holds `prompt`, `response` and `label` per row (JSON lines, a JSON array
or CSV). Labels are the judge's own scale: 1/0 for binary judges (refusal-patterns: 1 =
refused; classifier: 1 = complied); continuous judges (rubric 0-1, score 0-100) are made
binary with `threshold` (score >= threshold -> 1). Unparseable verdicts are counted and left
out of accuracy and kappa, never scored as agreement or disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DatasetUnavailableError
from harness.api.judge import Judge, JudgeRequest


@dataclass
class AgreementReport:
    n: int
    scored: int
    unparsed: int
    accuracy: float | None
    kappa: float | None
    labels: list[int]
    confusion: list[list[int]]  # rows: human label, columns: judge verdict (order of `labels`)
    judge: dict[str, Any] = field(default_factory=dict)


def read_labelled(path: Path) -> list[dict[str, Any]]:
    from harness.datafiles import read_table

    how = "give a file with columns prompt, response, label (JSON lines, JSON array or CSV)"
    if not path.is_file():
        raise DatasetUnavailableError(f"labelled file not found: {path}")
    columns, rows = read_table(path, "judge-agreement", how)
    missing = [c for c in ("prompt", "response", "label") if c not in columns]
    if missing:
        raise DatasetUnavailableError(f"judge-agreement: {path} lacks column {missing[0]!r}; {how}")
    return rows


def _binary(value: Any, threshold: float | None, where: str) -> int:
    try:
        x = float(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"judge-agreement: {where}: label {value!r} is not a number") from e
    if threshold is not None:
        return int(x >= threshold)
    if x not in (0.0, 1.0):
        raise ConfigError(f"judge-agreement: {where}: value {value!r} is not 0 or 1; pass --threshold for a scored judge")
    return int(x)


def agreement(judge: Judge, rows: list[dict[str, Any]], threshold: float | None = None) -> AgreementReport:
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    gold = [_binary(r["label"], threshold, f"row {i}") for i, r in enumerate(rows)]
    verdicts = judge.judge([JudgeRequest("agreement", str(r["prompt"]), str(r["response"])) for r in rows])
    pairs = [(g, _binary(v.score, threshold, f"verdict {i}")) for i, (g, v) in enumerate(zip(gold, verdicts))
             if v.score is not None]
    labels = [0, 1]
    if not pairs:
        return AgreementReport(len(rows), 0, len(rows), None, None, labels, [[0, 0], [0, 0]], judge.identity())
    y, p = zip(*pairs)
    accuracy = sum(a == b for a, b in pairs) / len(pairs)
    kappa = float(cohen_kappa_score(y, p, labels=labels)) if len(set(y) | set(p)) > 1 else None
    matrix = confusion_matrix(y, p, labels=labels).tolist()
    return AgreementReport(len(rows), len(pairs), len(rows) - len(pairs), accuracy, kappa, labels, matrix, judge.identity())
