"""HarmBench, JailbreakBench, AdvBench, StrongREJECT and SORRY-Bench loaders.

Every fixture is written here, in each source's documented schema, with harmless
project-written rows (no third-party text). Network is never used: downloads are served
from monkeypatched `urlopen` / `datasets.load_dataset`, or from file:// URLs.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.benchmarks import sources
from harness.benchmarks.advbench import AdvBench
from harness.api.benchmark import PromptItem
from harness.benchmarks.harmbench import HarmBench
from harness.benchmarks.jailbreakbench import JailbreakBench
from harness.benchmarks.sorry_bench import SorryBench
from harness.benchmarks.strongreject import STRONGREJECT_COMMIT, StrongReject
from harness.cli import app
from harness.catalog import BENCHMARKS, build_benchmark
from harness.errors import ConfigError, DatasetUnavailableError

_REAL_URLOPEN = urllib.request.urlopen
NAMES = ("harmbench", "jailbreakbench", "advbench", "strongreject", "sorry-bench")


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _one_line(e: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    """Any download not explicitly served by a test fails at once, as it does offline; cache in tmp."""

    def offline(url, timeout=None, **_):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))


# --- HarmBench --------------------------------------------------------------------------------
HB_HEADER = ["Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID"]
HB_ROWS = [
    ["List three ways to keep a fern green", "standard", "gardening", "", "", "fern_tips"],
    ["Summarise the notice below in one line", "contextual", "office", "context", "The kettle on floor two is broken.", "kettle_notice"],
    ["Write a haiku about a teapot", "standard", "poetry", "", "", "teapot_haiku"],
    ["Reproduce the opening of the project's own manual", "copyright", "manuals", "hash_check, book", "", "manual_opening"],
    ["Rewrite the note below politely", "contextual", "office", "context", "Please stop leaving mugs\non the printer.", "mug_note"],
]


@pytest.fixture
def harmbench_csv(tmp_path) -> Path:
    return _csv(tmp_path / "hb" / "harmbench_behaviors_text_all.csv", HB_HEADER, HB_ROWS)


def test_harmbench_splits_categories_and_context(harmbench_csv):
    b = HarmBench(path=str(harmbench_csv))
    d = b.data
    assert {s: [it.id for it in v] for s, v in d.splits.items()} == {
        "standard": ["fern_tips", "teapot_haiku"],
        "contextual": ["kettle_notice", "mug_note"],
        "copyright": ["manual_opening"],
        "all": ["fern_tips", "kettle_notice", "teapot_haiku", "manual_opening", "mug_note"],
    }
    note = b.split("contextual")[1]
    assert note == PromptItem(id="mug_note", prompt="Rewrite the note below politely",
                              categories={"functional_category": "contextual", "semantic_category": "office",
                                          "tags": "context"},
                              context="Please stop leaving mugs\non the printer.")
    assert note.categories == {"functional_category": "contextual", "semantic_category": "office", "tags": "context"}
    assert b.split("copyright")[0].categories["tags"] == "hash_check, book"
    assert b.split("standard")[0].context == ""
    # HarmBench's DirectRequest format for contextual behaviours; standard ones are the behaviour itself.
    assert b.prompt(note) == "Please stop leaving mugs\non the printer.\n\n---\n\nRewrite the note below politely"
    assert b.prompt(b.split("standard")[0]) == "List three ways to keep a fern green"
    assert d.source == str(harmbench_csv.resolve())
    req = b.generate_request(b.split("standard")[0])
    assert (req.max_new_tokens, req.temperature, req.n, req.seed) == (512, 0.0, 1, None)
    assert b.default_metrics == ("asr@standard", "asr@contextual") and b.request_kinds == ("generate",)
    assert HarmBench(path=str(harmbench_csv)).data.data_hash() == d.data_hash()


def test_harmbench_limit_directory_layout_and_options(tmp_path, harmbench_csv):
    repo = tmp_path / "repo"
    _csv(repo / "data" / "behavior_datasets" / "harmbench_behaviors_text_val.csv", HB_HEADER, HB_ROWS[:2])
    b = HarmBench(path=str(repo), subset="val")
    assert [it.id for it in b.split("all")] == ["fern_tips", "kettle_notice"]
    limited = HarmBench(path=str(harmbench_csv), limit=1)
    assert [it.id for it in limited.split("all")] == ["fern_tips", "kettle_notice", "manual_opening"]
    assert HarmBench(path=str(harmbench_csv), max_new_tokens=64).generate_request(limited.split("all")[0]).max_new_tokens == 64
    with pytest.raises(ConfigError, match="subset"):
        HarmBench(path=str(harmbench_csv), subset="dev").load()
    with pytest.raises(DatasetUnavailableError, match="harmbench_behaviors_text_all.csv not found"):
        HarmBench(path=str(repo)).load()


@pytest.mark.parametrize(
    "mutate,needles",
    [
        (lambda h, r: (h[:2] + h[3:], [x[:2] + x[3:] for x in r]), ("lacks column 'SemanticCategory'",
                                                                  "expected columns: Behavior, FunctionalCategory")),
        (lambda h, r: (h, [r[0][:1] + ["ordinary"] + r[0][2:]]), ("'FunctionalCategory' must be one of",)),
        (lambda h, r: (h, [r[1][:4] + [""] + r[1][5:]]), ("contextual behaviour without a 'ContextString'",)),
        (lambda h, r: (h, [r[0], r[0]]), ("repeats BehaviorID 'fern_tips'",)),
    ],
)
def test_harmbench_schema_errors(tmp_path, mutate, needles):
    header, rows = mutate(list(HB_HEADER), [list(r) for r in HB_ROWS])
    f = _csv(tmp_path / "hb.csv", header, rows)
    with pytest.raises(DatasetUnavailableError) as e:
        HarmBench(path=str(f)).load()
    _one_line(e, "harmbench:", *needles, "`path`")


def test_harmbench_offline_without_path_is_one_line():
    with pytest.raises(DatasetUnavailableError) as e:
        HarmBench(timeout=2).load()
    _one_line(e, "cannot download https://raw.githubusercontent.com/centerforaisafety/HarmBench/main/"
                 "data/behavior_datasets/harmbench_behaviors_text_all.csv", "URLError",
              "set the harmbench option `path`")


class _Served:
    """A stand-in for urlopen that serves fixed bytes per URL and records what was asked."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.calls = files, []

    def __call__(self, url, timeout=None, **_):
        self.calls.append((url, timeout))
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(self.files[url])


def test_harmbench_download_pins_commit_and_caches(monkeypatch, harmbench_csv):
    url = ("https://raw.githubusercontent.com/centerforaisafety/HarmBench/abc123/"
           "data/behavior_datasets/harmbench_behaviors_text_all.csv")
    served = _Served({url: harmbench_csv.read_bytes()})
    monkeypatch.setattr(urllib.request, "urlopen", served)
    b = HarmBench(commit="abc123", timeout=5)
    assert b.data.source == url and len(b.split("all")) == 5
    assert served.calls == [(url, 5.0)]
    cached = sources.cached_path("harmbench", url)
    assert cached.read_bytes() == harmbench_csv.read_bytes()
    assert not list(cached.parent.glob(".*.tmp"))  # atomic: no temp file left behind
    again = HarmBench(revision="abc123")  # `revision` is an alias; the cached copy is reused
    assert again.data.data_hash() == b.data.data_hash() and len(served.calls) == 1
    with pytest.raises(DatasetUnavailableError) as e:
        HarmBench(commit="def456").load()
    _one_line(e, "HTTP 404", "def456")
    with pytest.raises(ConfigError, match="commit"):
        HarmBench(commit="main/../x").load()


def test_fetch_pinned_file_url_and_checksum(tmp_path, monkeypatch):
    src = tmp_path / "data.csv"
    src.write_text("a,b\n1,2\n")
    url = src.resolve().as_uri()
    import hashlib

    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    monkeypatch.setattr(urllib.request, "urlopen", _REAL_URLOPEN)  # file:// is served locally, no network
    got = sources.fetch_pinned("demo", url, "fix it", sha256=digest)
    assert got.read_text() == "a,b\n1,2\n" and got.name == "data.csv"
    with pytest.raises(DatasetUnavailableError) as e:
        sources.fetch_pinned("demo", url, "fix it", sha256="0" * 64)
    _one_line(e, "does not match its recorded sha256", "fix it")
    empty = tmp_path / "empty.csv"
    empty.write_text("  \n")
    with pytest.raises(DatasetUnavailableError, match="is empty"):
        sources.fetch_pinned("demo", empty.resolve().as_uri(), "fix it")
    with pytest.raises(ConfigError, match="timeout"):
        sources.check_timeout(0)


# --- JailbreakBench ---------------------------------------------------------------------------
JBB_HEADER = ["Index", "Goal", "Target", "Behavior", "Category", "Source"]


def _jbb_rows(kind: str, n: int) -> list[list[str]]:
    cats = ["Kitchen", "Garden", "Office"]
    return [[str(i + 1), f"Explain {kind} chore number {i}", f"Sure, here is {kind} chore {i}", f"{kind}-chore-{i}",
             cats[i % 3], ["Original", "TDC/HarmBench", "AdvBench"][i % 3]] for i in range(n)]


@pytest.fixture
def jbb_dir(tmp_path) -> Path:
    d = tmp_path / "jbb"
    _csv(d / "data" / "harmful-behaviors.csv", JBB_HEADER, _jbb_rows("harmful", 4))
    _csv(d / "data" / "benign-behaviors.csv", JBB_HEADER, _jbb_rows("benign", 3))
    return d


def test_jailbreakbench_local(jbb_dir):
    b = JailbreakBench(path=str(jbb_dir))
    assert {s: len(v) for s, v in b.data.splits.items()} == {"harmful": 4, "benign": 3}
    item = b.split("harmful")[1]
    assert item == PromptItem(id="jbb-harmful-2", prompt="Explain harmful chore number 1",
                              categories={"category": "Garden", "source": "TDC/HarmBench"},
                              target="Sure, here is harmful chore 1")
    assert item.categories == {"category": "Garden", "source": "TDC/HarmBench"}
    assert b.reference(item) == "Sure, here is harmful chore 1"
    assert b.data.meta["behaviors"]["jbb-benign-1"] == "benign-chore-0"
    req = b.generate_request(item)
    assert (req.max_new_tokens, req.temperature, req.top_p) == (150, 0.0, 0.9)
    assert b.default_metrics == ("asr@harmful", "refusal_rate@benign")
    assert [it.id for it in JailbreakBench(path=str(jbb_dir), limit=2).split("benign")] == ["jbb-benign-1", "jbb-benign-2"]


def test_jailbreakbench_schema_and_missing_split(tmp_path, jbb_dir):
    rows = _jbb_rows("harmful", 2)
    _csv(tmp_path / "bad" / "harmful-behaviors.csv", [h for h in JBB_HEADER if h != "Target"],
         [r[:2] + r[3:] for r in rows])
    _csv(tmp_path / "bad" / "benign-behaviors.csv", JBB_HEADER, _jbb_rows("benign", 1))
    with pytest.raises(DatasetUnavailableError) as e:
        JailbreakBench(path=str(tmp_path / "bad")).load()
    _one_line(e, "lacks column 'Target'", "expected columns: Index, Goal, Target, Behavior, Category, Source")
    (jbb_dir / "data" / "benign-behaviors.csv").unlink()
    with pytest.raises(DatasetUnavailableError, match="benign-behaviors.csv not found"):
        JailbreakBench(path=str(jbb_dir)).load()


def test_jailbreakbench_hub(monkeypatch):
    import datasets

    asked = []

    def fake_load(hub_id, name=None, revision=None, split=None, **_):
        asked.append((hub_id, name, revision, split))
        return [dict(zip(JBB_HEADER, [int(r[0]), *r[1:]])) for r in _jbb_rows(split, 2)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    b = JailbreakBench(revision="r1")
    assert b.data.source == "JailbreakBench/JBB-Behaviors@r1"
    assert asked == [("JailbreakBench/JBB-Behaviors", "behaviors", "r1", "harmful"),
                     ("JailbreakBench/JBB-Behaviors", "behaviors", "r1", "benign")]
    assert [it.id for it in b.split("benign")] == ["jbb-benign-1", "jbb-benign-2"]

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'JailbreakBench/JBB-Behaviors' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DatasetUnavailableError) as e:
        JailbreakBench().load()
    _one_line(e, "JailbreakBench/JBB-Behaviors@main", "set the jailbreakbench option `path`")


# --- AdvBench ---------------------------------------------------------------------------------
def _advbench_dir(root: Path, header=("goal", "target"), targets=None) -> Path:
    goals = ["Write a limerick about a lighthouse", "Give a recipe for plain toast", "Describe a quiet library"]
    targets = targets or ["Sure, here is a limerick about a lighthouse", "Sure, here is a recipe for plain toast",
                          "Sure, here is a description of a quiet library"]
    # With header=("target", "goal") this is the third-party swap: the header reversed, the columns not.
    rows = [[g, t] for g, t in zip(goals, targets)]
    _csv(root / "data" / "advbench" / "harmful_behaviors.csv", list(header), rows)
    _csv(root / "data" / "advbench" / "harmful_strings.csv", ["target"],
         [["The lighthouse keeper waved hello."], ["Toast is best with butter."]])
    return root


def test_advbench_behaviors_and_strings(tmp_path):
    root = _advbench_dir(tmp_path / "adv")
    b = AdvBench(path=str(root))
    assert {s: len(v) for s, v in b.data.splits.items()} == {"behaviors": 3, "strings": 2}
    first = b.split("behaviors")[0]
    assert first == PromptItem(id="advbench-behaviors-0", prompt="Write a limerick about a lighthouse",
                               target="Sure, here is a limerick about a lighthouse")
    assert first.categories == {}
    s = b.split("strings")[1]
    assert (s.id, s.prompt, s.target) == ("advbench-strings-1", "", "Toast is best with butter.")
    assert b.default_metrics == ("asr@behaviors",)
    req = b.generate_request(first)
    assert (req.max_new_tokens, req.temperature) == (512, 0.0)
    single = AdvBench(path=str(root / "data" / "advbench" / "harmful_behaviors.csv"), limit=2)
    assert list(single.data.splits) == ["behaviors"] and len(single.split("behaviors")) == 2


def test_advbench_header_swap_and_target_prefix(tmp_path):
    swapped = _advbench_dir(tmp_path / "swap", header=("target", "goal"))
    with pytest.raises(DatasetUnavailableError) as e:
        AdvBench(path=str(swapped)).load()
    _one_line(e, "has header 'target,goal', expected exactly 'goal,target'", "header swap")
    odd = _advbench_dir(tmp_path / "odd", targets=["Sure, here is one", "Certainly: two", "Sure, here is three"])
    with pytest.raises(DatasetUnavailableError) as e:
        AdvBench(path=str(odd)).load()
    _one_line(e, "row 1", "does not start with 'Sure, here is'")
    assert len(AdvBench(path=str(odd), check_targets=False).split("behaviors")) == 3
    extra = tmp_path / "extra" / "harmful_behaviors.csv"
    _csv(extra, ["goal", "target", "note"], [["a", "Sure, here is a", "x"]])
    with pytest.raises(DatasetUnavailableError, match="expected exactly 'goal,target'"):
        AdvBench(path=str(extra)).load()
    with pytest.raises(DatasetUnavailableError, match="cannot tell the split"):
        AdvBench(path=str(_csv(tmp_path / "other.csv", ["goal", "target"], [["a", "Sure, here is a"]]))).load()


def test_advbench_offline_names_url_and_option():
    with pytest.raises(DatasetUnavailableError) as e:
        AdvBench().load()
    _one_line(e, "https://raw.githubusercontent.com/llm-attacks/llm-attacks/main/data/advbench/harmful_behaviors.csv",
              "set the advbench option `path`")


# --- StrongREJECT -----------------------------------------------------------------------------
SR_HEADER = ["category", "source", "forbidden_prompt"]
SR_ROWS = [["Chores", "custom", "How do I fold a fitted sheet?"], ["Cooking", "custom", "How long do I boil an egg?"],
           ["Chores", "made-up", "What removes tea stains from mugs?"], ["Garden", "custom", "When should I prune roses?"]]


def test_strongreject_all_and_small(tmp_path):
    d = tmp_path / "sr" / "strongreject_dataset"
    _csv(d / "strongreject_dataset.csv", SR_HEADER, SR_ROWS)
    _csv(d / "strongreject_small_dataset.csv", SR_HEADER, [SR_ROWS[2], ["Garden", "custom", "Only in the small file?"]])
    b = StrongReject(path=str(tmp_path / "sr"))
    assert [it.id for it in b.split("all")] == [f"strongreject-{i}" for i in range(4)]
    assert [it.id for it in b.split("small")] == ["strongreject-2", "strongreject_small-1"]  # shared id when shared
    assert b.split("all")[2].categories == {"category": "Chores", "source": "made-up"}
    assert b.default_metrics == ("asr@all",)
    assert (b.generate_request(b.split("all")[0]).max_new_tokens, b.temperature) == (512, 0.0)
    only_full = StrongReject(path=str(d / "strongreject_dataset.csv"), limit=3)
    assert list(only_full.data.splits) == ["all"] and len(only_full.split("all")) == 3
    assert list(StrongReject(path=str(tmp_path / "sr"), small=False).data.splits) == ["all"]


def test_strongreject_schema_and_offline(tmp_path, monkeypatch):
    f = _csv(tmp_path / "strongreject_dataset.csv", ["category", "source", "prompt"], [r for r in SR_ROWS])
    with pytest.raises(DatasetUnavailableError) as e:
        StrongReject(path=str(f)).load()
    _one_line(e, "lacks column 'forbidden_prompt'", "expected columns: category, source, forbidden_prompt")
    with pytest.raises(DatasetUnavailableError) as e:
        StrongReject().load()
    _one_line(e, f"alexandrasouly/strongreject/{STRONGREJECT_COMMIT}/strongreject_dataset/strongreject_dataset.csv",
              "set the strongreject option `path`")
    full = _csv(tmp_path / "up.csv", SR_HEADER, SR_ROWS).read_bytes()
    base = "https://raw.githubusercontent.com/alexandrasouly/strongreject/c0ffee/strongreject_dataset/"
    monkeypatch.setattr(urllib.request, "urlopen", _Served({base + "strongreject_dataset.csv": full}))
    b = StrongReject(commit="c0ffee", small=False)
    assert b.data.source == base + "strongreject_dataset.csv" and len(b.split("all")) == 4


# --- SORRY-Bench ------------------------------------------------------------------------------
def _sorry_rows(n_base=20):
    rows = [{"question_id": i + 1, "category": str(i % 5 + 1), "turns": [f"Please describe household task {i}."],
             "prompt_style": "base"} for i in range(n_base)]
    rows += [{"question_id": i + 1, "category": str(i % 5 + 1), "turns": [f"Pls descrbe housold task {i}."],
              "prompt_style": "misspellings"} for i in range(4)]
    return rows


def test_sorry_bench_requires_a_local_path():
    with pytest.raises(DatasetUnavailableError) as e:
        SorryBench().load()
    _one_line(e, "sorry-bench: no local path given", "gated", "custom license", "sorry-bench/sorry-bench-202406",
              "`path`", "prompt_style, category, turns")


def test_sorry_bench_jsonl_splits_and_ches_split(tmp_path):
    f = tmp_path / "question.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in _sorry_rows()))
    b = SorryBench(path=str(tmp_path))
    d = b.data
    assert {s: len(v) for s, v in d.splits.items()} == {"base": 20, "all": 24, "train": 17, "test": 3}
    item = b.split("base")[3]
    assert item == PromptItem(id="sorry-4-base", prompt="Please describe household task 3.",
                              categories={"category": "4", "prompt_style": "base"})
    assert item.categories == {"category": "4", "prompt_style": "base"}
    # Independent computation of the documented split: seeded permutation, first int(0.15 n) to test.
    perm = np.random.default_rng(128).permutation(20)
    assert [it.id for it in b.split("test")] == [f"sorry-{i + 1}-base" for i in perm[:3]]
    assert sorted(it.id for it in b.split("train") + b.split("test")) == sorted(it.id for it in b.split("base"))
    req = b.generate_request(item, seed=7)
    assert (req.max_new_tokens, req.temperature, req.top_p, req.n, req.seed) == (512, 0.7, 1.0, 1, 7)
    assert b.default_metrics == ("refusal_rate@base",)
    other = SorryBench(path=str(f), test_fraction=0.25, split_seed=3)
    assert [it.id for it in other.split("test")] == [f"sorry-{i + 1}-base" for i in np.random.default_rng(3).permutation(20)[:5]]
    assert set(SorryBench(path=str(f), test_fraction=0).data.splits) == {"base", "all"}
    assert len(SorryBench(path=str(f), limit=2).split("test")) == 2


def test_sorry_bench_csv_prompt_columns(tmp_path):
    rows = _sorry_rows(4)
    plain = _csv(tmp_path / "sorry_bench_202406.csv", ["question_id", "category", "prompt ", "prompt_style"],
                 [[r["question_id"], r["category"], r["turns"][0], r["prompt_style"]] for r in rows])
    b = SorryBench(path=str(plain), test_fraction=0.5)
    assert b.split("base")[0].prompt == "Please describe household task 0."
    assert b.data.meta["prompt_column"] == "prompt"
    listed = _csv(tmp_path / "turns.csv", ["category", "turns", "prompt_style"],
                  [[r["category"], json.dumps(r["turns"]), r["prompt_style"]] for r in rows])
    assert [it.prompt for it in SorryBench(path=str(listed)).split("all")][:2] == [
        "Please describe household task 0.", "Please describe household task 1."]
    small = SorryBench(path=str(listed))
    assert small.split("all")[0].id == "sorry-0-base"  # no question_id: the row number
    assert set(small.data.splits) == {"base", "all"} and small.data.meta["ches_split"].startswith("omitted")


@pytest.mark.parametrize(
    "header,needles",
    [
        (["question_id", "category", "prompt"], ("lacks column 'prompt_style'",)),
        (["question_id", "prompt_style", "prompt"], ("lacks column 'category'",)),
        (["question_id", "category", "prompt_style"], ("lacks the prompt column 'turns' (or 'prompt')",)),
    ],
)
def test_sorry_bench_schema_errors(tmp_path, header, needles):
    values = {"question_id": "1", "category": "1", "prompt": "Please describe a task.", "prompt_style": "base"}
    f = _csv(tmp_path / "s.csv", header, [[values[h] for h in header]])
    with pytest.raises(DatasetUnavailableError) as e:
        SorryBench(path=str(f)).load()
    _one_line(e, "sorry-bench:", *needles, "prompt_style, category, turns (or prompt)")


def test_sorry_bench_bad_options_and_no_base(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in _sorry_rows()))
    for opts, pattern in [({"test_fraction": 1.0}, "test_fraction"), ({"test_fraction": True}, "test_fraction"),
                          ({"split_seed": -1}, "split_seed"), ({"test_fraction": 0.01}, "empty train or test")]:
        with pytest.raises(ConfigError, match=pattern):
            SorryBench(path=str(f), **opts).load()
    g = tmp_path / "mutated.jsonl"
    g.write_text("".join(json.dumps(r) + "\n" for r in _sorry_rows()[20:]))
    with pytest.raises(DatasetUnavailableError, match="no row with prompt_style 'base'"):
        SorryBench(path=str(g)).load()


# --- registry and CLI -------------------------------------------------------------------------
runner = CliRunner()


def test_registered_and_listed():
    for name in NAMES:
        assert name in BENCHMARKS
        assert build_benchmark(name).name == name
    result = runner.invoke(app, ["ls", "benchmarks"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.output
    assert "gated" in result.output


def test_validate_accepts_each_with_a_local_path(tmp_path, harmbench_csv, jbb_dir, write_config):
    adv = _advbench_dir(tmp_path / "adv")
    sr = _csv(tmp_path / "sr.csv", SR_HEADER, SR_ROWS)
    sorry = tmp_path / "question.jsonl"
    sorry.write_text("".join(json.dumps(r) + "\n" for r in _sorry_rows()))
    paths = {"harmbench": harmbench_csv, "jailbreakbench": jbb_dir, "advbench": adv, "strongreject": sr, "sorry-bench": sorry}
    cfg = {"models": ["tiny-facts"], "output_dir": str(tmp_path / "out"),
           "benchmarks": [{"name": n, "params": {"path": str(paths[n]), "limit": 2}} for n in NAMES]}
    p = write_config(cfg)
    result = runner.invoke(app, ["validate", str(p)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    for n in NAMES:  # and each one loads from its path as the runner would build it
        assert build_benchmark(n, path=str(paths[n]), limit=2).data.splits
