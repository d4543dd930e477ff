"""Malformed configs and dataset files, generated here, through the CLI in a real subprocess.

Every input must end as a user error: exit code 2, exactly one `error:` line on stderr, no
traceback, no control characters echoed to the terminal, and no result files. All commands
run in one driver process (tests/_cli_driver.py) so the whole file takes seconds; one input
also goes through the real entry point, to keep the driver honest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli_subprocess import run_batch, run_one, user_error_problems

DEEP = 100_000
HUGE = 2_000_000  # characters on one line
ESC_LINK = "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07"
ALKALI_ROW = {"id": "1", "prompt": "p", "macro_category": "jailbreak", "subtype": "s", "attack_family": "f",
              "source_paper": "x"}


def _yaml_str(s: str) -> str:
    """A double-quoted YAML scalar (escapes control characters, which raw YAML rejects)."""
    return json.dumps(s)


def _alias_bomb() -> str:
    parts = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    parts += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return "models: [tiny-facts]\nbenchmarks: [fictitious-facts]\nmethods: [{name: npo, params: {" + \
        ", ".join(parts) + "}}]\n"


BASE = "models: [tiny-facts]\nbenchmarks: [fictitious-facts]\n"
CONFIGS: dict[str, bytes | str] = {
    "empty": "",
    "comment only": "# nothing here\n",
    "whitespace": "   \n\t\n",
    "top-level list": "- models\n- benchmarks\n",
    "top-level scalar": "just a string\n",
    "latin-1": (BASE + "# café\n").encode("latin-1"),
    "utf-16": (BASE).encode("utf-16"),
    "binary": bytes(range(256)) * 20,
    "NUL bytes": BASE + "\x00\x00\n",
    "deep json list": "[" * DEEP + "]" * DEEP,
    "deep json object": '{"models": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}",
    "deep yaml flow": "models: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n",
    "deep-ish value (2000)": BASE + "methods: [{name: npo, params: {beta: " + "[" * 2000 + "]" * 2000 + "}}]\n",
    "alias bomb": _alias_bomb(),
    "huge line model": "models: [" + "a" * HUGE + "]\nbenchmarks: [fictitious-facts]\n",
    "huge line scalar": "b" * HUGE + "\n",
    "huge line bad yaml": "models: [" + "c, " * 30_000 + "\n",  # PyYAML parses ~30k items/s
    "markup key [/]": BASE + '"[/]": 1\n',
    "markup key [link]": BASE + '"[link=https://evil.example]x[/link]": 1\n',
    "markup model": 'models: ["[bold]x[red]"]\nbenchmarks: [fictitious-facts]\n',  # no "/": not a hub id
    "markup benchmark": 'models: [tiny-facts]\nbenchmarks: ["[/]"]\n',
    "markup method param": BASE + 'methods: [{name: npo, params: {"[/]": 1}}]\n',
    "markup metric": BASE + 'metrics: ["[/]@forget"]\n',
    "ESC/OSC-8 model": f"models: [{_yaml_str(ESC_LINK)}]\nbenchmarks: [fictitious-facts]\n",
    "ESC key": BASE + f"{_yaml_str(chr(27) + '[2J' + 'k')}: 1\n",
    "newline in name": f"models: [{_yaml_str('a' + chr(10) + 'error: fake second line')}]\nbenchmarks: [b]\n",
    "U+2028 and NEL in name": f"models: [tiny-facts]\nbenchmarks: [{_yaml_str('x' + chr(0x2028) + 'y' + chr(0x85))}]\n",
    "raw ESC in file": BASE + "# \x1b[31m\n",
    "tab indentation": "models:\n\t- tiny-facts\n",
    "python tag": BASE + "seed: !!python/object/apply:os.system ['true']\n",
    "unknown key": BASE + "modles: [x]\n",
    "models not a list": "models: 5\nbenchmarks: [fictitious-facts]\n",
    "benchmarks mapping": "models: [tiny-facts]\nbenchmarks: {a: 1}\n",
    "seed abc": BASE + "seed: abc\n",
    "device gpu9": BASE + "device: gpu9\n",
    "device with newline": BASE + f"device: {_yaml_str('cuda' + chr(10) + 'x')}\n",
    "batch size 0": BASE + "batch_size: 0\n",
    "limit text": BASE + "limit: lots\n",
    "num_gpus negative": BASE + "num_gpus: -1\n",
    "methods null": BASE + "methods: null\n",
    "json missing colon": '{"models" ["tiny-facts"], "benchmarks": ["fictitious-facts"]}',
}


def _datasets(tmp: Path) -> dict[str, Path]:
    d = tmp / "data"
    d.mkdir()
    files: dict[str, bytes | str] = {
        "empty.jsonl": "",
        "empty.csv": "",
        "header-only.csv": ",".join(ALKALI_ROW) + "\n",
        "missing-columns.jsonl": json.dumps({"id": "1", "prompt": "x"}) + "\n",
        "missing-columns.csv": "id,prompt\n1,x\n",
        "latin-1.csv": (",".join(ALKALI_ROW) + "\n1,caf\xe9,jailbreak,s,f,x\n").encode("latin-1"),
        "bad-bytes.jsonl": b"\xff\xfe\xfa\n",
        "utf-16.jsonl": (json.dumps(ALKALI_ROW) + "\n").encode("utf-16"),
        "NUL.csv": ("id\x00," + ",".join(list(ALKALI_ROW)[1:]) + "\n1,\x00,jailbreak,s,f,x\n"),
        "deep.json": "[" * DEEP + "]" * DEEP,
        "deep-line.jsonl": '{"a": ' * DEEP + "1" + "}" * DEEP + "\n",
        "huge-line.jsonl": json.dumps({"id": "1", "prompt": "x", "pad": "a" * HUGE}) + "\n",
        "huge-invalid-line.jsonl": "{" + "z" * HUGE + "\n",
        "markup-category.jsonl": json.dumps({**ALKALI_ROW, "macro_category": "[/]"}) + "\n",
        "markup-link-id.jsonl": "\n".join([json.dumps({**ALKALI_ROW, "id": "[link=https://evil.example]x"})] * 2),
        "osc8-category.jsonl": json.dumps({**ALKALI_ROW, "macro_category": ESC_LINK}) + "\n",
        "newline-category.csv": (",".join(ALKALI_ROW) + '\n1,p,"jail\nerror: fake",s,f,x\n'),
        "scalars.json": "[1, 2, 3]",
        "object.json": '{"rows": []}',
        "not-json.json": "[{'id': 1}]",
        "wrong-suffix.txt": "id,prompt\n",
        "numbers-as-prompt.jsonl": json.dumps({**ALKALI_ROW, "prompt": 5}) + "\n",
    }
    out = {}
    for name, content in files.items():
        p = d / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
        out[name] = p
    (d / "a-directory.jsonl").mkdir()
    out["a-directory.jsonl"] = d / "a-directory.jsonl"
    out["missing.jsonl"] = d / "missing.jsonl"
    return out


@pytest.mark.slow
def test_malformed_inputs_are_one_line_user_errors(tmp_path, toy_zoo):
    commands: list[list[str]] = []
    labels: list[tuple[str, Path]] = []
    # configs: validated, and run (with -o, since a broken config has no output_dir of its own)
    for i, (name, content) in enumerate(CONFIGS.items()):
        p = tmp_path / "configs" / f"c{i}.yaml"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        out = tmp_path / "out" / f"c{i}"
        commands += [["validate", str(p)], ["run", str(p), "-o", str(out)]]
        labels += [(f"validate: {name}", out), (f"run: {name}", out)]
    # dataset files: a valid config whose benchmark reads the malformed file (found by `run`)
    toy = {"toy": toy_zoo["toy"]}
    for i, (name, path) in enumerate(_datasets(tmp_path).items()):
        out = tmp_path / "out" / f"d{i}"
        cfg = {"zoo": toy, "models": ["toy"], "benchmarks": [{"name": "alkali", "params": {"path": str(path)}}],
               "output_dir": str(out), "cache": False, "limit": 2}
        p = tmp_path / "configs" / f"d{i}.yaml"
        p.write_text(yaml.safe_dump(cfg))
        commands.append(["run", str(p)])
        labels.append((f"data: {name}", out))
    # flags
    out = tmp_path / "out" / "flags"
    flag_cases = {
        "--seed abc": ["--seed", "abc"],
        "--device gpu9": ["--device", "gpu9"],
        "--batch-size lots": ["--batch-size", "lots"],
        "--limit x": ["--limit", "x"],
        "-p markup": ["--method", "npo", "-p", "npo.[/]=1"],
        "-p deep value": ["--method", "npo", "-p", "npo.beta=" + "[" * 50_000 + "]" * 50_000],
        "--shard bad": ["--shard", "5/4"],
        "--executor bad": ["--executor", "[/]"],
        "--metrics markup": ["--metrics", "[link=https://evil.example]x"],
        "model with ESC": ["-m", ESC_LINK],
    }
    for name, extra in flag_cases.items():
        base = ["run", "-b", "fictitious-facts", "-o", str(out)]
        commands.append(base + (["-m", "tiny-facts"] if "-m" not in extra else []) + extra)
        labels.append((f"flags: {name}", out))

    outcomes = run_batch(commands, env={"HARNESS_CACHE_DIR": str(tmp_path / "cache")})
    failures = []
    for (label, out_dir), outcome in zip(labels, outcomes):
        problems = user_error_problems(outcome, out_dir)
        if problems:
            failures.append(f"{label}: {problems}: {outcome.stderr.strip()[-300:]!r}")
    assert not failures, f"{len(failures)} of {len(outcomes)} inputs:\n" + "\n".join(failures)
    assert len(outcomes) == len(commands) >= 100


def test_driver_agrees_with_the_real_entry_point(tmp_path):
    p = tmp_path / "markup.yaml"
    p.write_text(CONFIGS["markup key [/]"])
    [batched] = run_batch([["validate", str(p)]])
    real = run_one(["validate", str(p)])
    assert (batched.code, batched.stderr.strip()) == (real.code, real.stderr.strip())
    assert not user_error_problems(real)
