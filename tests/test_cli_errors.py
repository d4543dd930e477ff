"""User errors through the real entry point (a subprocess, as a user runs it), issue 18:
rich markup in messages, a corrupt response cache, undecodable and deeply nested configs,
a bad `--seed`, a bad device. Each: exit 2, one `error:` line, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli_subprocess import assert_user_error, run_batch, run_one


def _cfg(tmp_path: Path, zoo: dict, name: str = "exp.yaml", **over) -> Path:
    data = {"zoo": zoo, "models": ["toy"], "benchmarks": ["fictitious-facts"], "metrics": ["rouge_l_recall@forget"],
            "output_dir": str(tmp_path / "out"), "limit": 2, **over}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_markup_in_a_message_is_printed_literally(tmp_path):
    """`[/]` once crashed rich (MarkupError traceback, exit 1); `[link=…]` became a link."""
    bad = tmp_path / "markup.yaml"
    bad.write_text('models: [x]\nbenchmarks: [y]\n"[/]": 1\n')
    line = assert_user_error(run_one(["validate", str(bad)]), "[/]")
    link = tmp_path / "link.yaml"
    link.write_text('models: ["[link=https://evil.example]click[/link]"]\nbenchmarks: [y]\n')
    line = assert_user_error(run_one(["run", str(link), "-o", str(tmp_path / "out")]), out_dir=tmp_path / "out")
    assert "[link=https://evil.example]click[/link]" in line


def test_corrupt_response_cache_is_one_line_and_kept(tmp_path, toy_zoo):
    cache = tmp_path / "cache"
    cache.mkdir()
    garbage = b"this is not SQLite\x00\xff" * 300
    (cache / "responses.sqlite").write_bytes(garbage)
    cfg = _cfg(tmp_path, toy_zoo, cache_dir=str(cache))
    line = assert_user_error(run_one(["run", str(cfg)]), out_dir=tmp_path / "out")
    assert str(cache / "responses.sqlite") in line and "move it aside" in line and "--no-cache" in line
    assert (cache / "responses.sqlite").read_bytes() == garbage  # user data is never deleted


def test_config_user_errors(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("models: [tiny-facts]\nbenchmarks: [fictitious-facts]\n# café\n".encode("latin-1"))
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000)
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("models: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n")
    gpu9 = _cfg(tmp_path, {}, "gpu9.yaml", models=["tiny-facts"], device="gpu9")
    out = tmp_path / "out"
    outcomes = [
        run_one(["validate", str(latin)]),  # the real entry point, once
        *run_batch([
            ["run", str(latin), "-o", str(out)],
            ["validate", str(deep_json)],
            ["run", str(deep_yaml), "-o", str(out)],
            ["run", "-m", "tiny-facts", "-b", "fictitious-facts", "--seed", "abc", "-o", str(out)],
            ["validate", str(gpu9)],
            ["run", "-m", "tiny-facts", "-b", "fictitious-facts", "--device", "gpu9", "-o", str(out)],
            ["run", str(_cfg(tmp_path, {}, "seed.yaml", models=["tiny-facts"], seed="abc")), "-o", str(out)],
        ]),
    ]
    needles = [("not UTF-8",), ("not UTF-8",), ("nested",), ("nested",), ("--seed",), ("device", "gpu9"),
               ("device", "gpu9"), ("seed",)]
    for outcome, words in zip(outcomes, needles):
        assert_user_error(outcome, *words, out_dir=out)


def test_usage_errors_are_one_line(tmp_path):
    for o in run_batch([["rnu"], ["run", "--no-such-flag"], ["validate"], ["ls", "a", "b"]]):
        assert_user_error(o, "(see --help)")
    seed = run_one(["run", "-m", "tiny-facts", "-b", "fictitious-facts", "--seed", "abc"])
    assert_user_error(seed, "--seed")
    assert "╭" not in seed.stderr and "Usage:" not in seed.stderr


def test_valid_devices_pass_validation(tmp_path):
    from harness.devices import check_device

    for ok in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        assert check_device(ok) == ok
    for bad in ("gpu9", "cuda:", "cuda:x", "CPU", " cpu", "cuda:0,1", "", "cpu\n"):
        try:
            check_device(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
