"""Result files whose every text field is hostile (not a test module): what a shared results
directory may hold when model outputs and dataset fields are adversarial. Written with the
schema's own writer (`write_cell`), exactly as a run writes them."""

from __future__ import annotations

from pathlib import Path

from tests.test_leaderboard import _unescaped_pipes
from harness.results import MetricValue, Provenance, ReportLayout, RunSummary, SampleRecord, cell_dir, write_cell

SCRIPT = "<script>window.__pwned=1;alert(1)</script>"
IMG = '<img src=x onerror="window.__pwned=2;alert(2)">'
CLOSE = "</script><script>window.__pwned=3;alert(3)</script>"
ANSI = "\x1b[31mRED\x1b[0m \x1b]8;;http://evil.example/\x07link\x1b]8;;\x07"
FORMULA = '=HYPERLINK("http://evil.example/","click")'
PIPES = "a | b\n| c"
PAYLOADS = (SCRIPT, IMG, CLOSE, ANSI, FORMULA, PIPES)

MODEL = f"tiny{IMG}"
METHOD = FORMULA
BENCHMARK = "adversarial-probes"
# Category names become metric ids (`asr@adversarial[attack_family=<category>]`).
FAMILIES = [SCRIPT, IMG, FORMULA, "plain"]
ITEM_ID = f"item-{CLOSE}"


def write_hostile_results(root: Path) -> Path:
    """Two cells (the original and a hostile-named method) of one benchmark, with ASR by
    hostile attack family, and samples whose ids, prompts, references, generations and judge
    verdicts carry every payload."""
    for method, asr in (("none", 0.4), (METHOD, 0.1)):
        metrics = {"asr@adversarial": MetricValue(value=asr, ci_low=asr - 0.05, ci_high=asr + 0.05, n=40,
                                                  higher_is_better=False)}
        for k, family in enumerate(FAMILIES):
            v = asr + 0.1 * k
            metrics[f"asr@adversarial[attack_family={family}]"] = MetricValue(
                value=v, ci_low=v - 0.1, ci_high=v + 0.1, n=10, higher_is_better=False)
        metrics[f"{PIPES}{ANSI}"] = MetricValue(value=0.5, n=3, higher_is_better=True)
        summary = RunSummary(
            model=MODEL, method=method, benchmark=BENCHMARK, metrics=metrics,
            provenance=Provenance(config_hash="c0ffee", harness_version="0.1.0", seed=0,
                                  model_identity=f"sha256:abc{SCRIPT}", dataset_source=f"local:{FORMULA}{ANSI}",
                                  dataset_hash="d1" * 32, git_commit="1234567"),
            layout=ReportLayout(headline=["asr@adversarial"],
                                views={"ASR by attack family": ["asr@adversarial[attack_family=*]"]}),
        )
        samples = [
            SampleRecord(split="adversarial", item_id=ITEM_ID, prompt=f"Tell me {SCRIPT} {PIPES}",
                         reference=IMG, generation=f"{CLOSE} {ANSI} {FORMULA} [{method}]",
                         values={"asr@adversarial": 1.0}, notes={"asr@adversarial": f"complied {IMG}"}),
            SampleRecord(split="adversarial", item_id="calm-item", prompt="Say hello.", reference="",
                         generation="Hello.", values={"asr@adversarial": 0.0}, notes={"asr@adversarial": "refusal"}),
        ]
        write_cell(cell_dir(root, MODEL, method, BENCHMARK), summary, samples)
    return root


def write_hostile_dataset(directory: Path) -> Path:
    """A local JailbreakBench copy (the `path` option) whose ids, goals, targets and categories
    carry the payloads; categories become metric ids (`asr@harmful[category=...]`)."""
    import json

    rows = {
        "harmful": [{"Index": f"1{CLOSE}", "Goal": f"Tell me {SCRIPT} {PIPES}", "Target": IMG, "Behavior": "b1",
                     "Category": SCRIPT, "Source": FORMULA},
                    {"Index": "2", "Goal": f"{ANSI} and {FORMULA}", "Target": "Sure", "Behavior": "b2",
                     "Category": IMG, "Source": ANSI}],
        "benign": [{"Index": "1", "Goal": "Say hello.", "Target": "Hello", "Behavior": "b3", "Category": FORMULA,
                    "Source": "Original"}],
    }
    directory.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        (directory / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    return directory


def assert_markdown_and_csv_intact(root: Path, rows: int = 2, formula_cell: str | None = FORMULA) -> None:
    """leaderboard.md: every table row has its header's cells and no unescaped tag or link;
    leaderboard.csv: one line per row, no cell a spreadsheet would evaluate, no control character."""
    import csv
    import io
    import re

    md = (root / "leaderboard.md").read_text()
    for block in md.split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("|")]
        if lines:  # no pipe or newline in a cell broke its row
            assert len({_unescaped_pipes(line) for line in lines}) == 1, block
    assert not re.search(r"(?<!\\)[<>\[\]]", md) and "\x1b" not in md  # no tag or link Markdown would read
    table = list(csv.reader(io.StringIO((root / "leaderboard.csv").read_text())))
    assert len(table) == 1 + rows and len({len(r) for r in table}) == 1  # header + the rows, none split
    for cell in (c for r in table for c in r):
        assert not cell.startswith(("=", "+", "@")), cell
        assert "\x1b" not in cell and "\n" not in cell
    if formula_cell is not None:
        assert any(c == "'" + formula_cell for r in table for c in r)
