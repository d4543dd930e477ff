"""report.html in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
which `.ci/run` installs) driven by Selenium, with the driver and browser given by path so that
Selenium Manager never downloads anything.

Each test saves screenshots under $HARNESS_ARTIFACTS (default tests/artifacts/).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from harness.results import load_samples
from harness.reports.leaderboard import format_number
from tests.cli_subprocess import run_one
from tests.conftest import ROOT, toy_experiment
from tests.hostile import (ANSI, CLOSE, FORMULA, IMG, ITEM_ID, METHOD, MODEL, PIPES, SCRIPT, assert_markdown_and_csv_intact,
                           write_hostile_dataset, write_hostile_results)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[dev]')")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ARTIFACTS = Path(os.environ.get("HARNESS_ARTIFACTS") or ROOT / "tests" / "artifacts")


def _binary(env: str, *names: str) -> str | None:
    return os.environ.get(env) or next((p for n in names if (p := shutil.which(n))), None)


@pytest.fixture(scope="module")
def browser():
    chromium = _binary("HARNESS_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    driver_path = _binary("HARNESS_CHROMEDRIVER", "chromedriver")
    if not chromium or not driver_path:
        pytest.skip("no headless Chromium here: install Debian's `chromium chromium-driver` (.ci/run does)")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.unhandled_prompt_behavior = "ignore"  # an alert stays open, for the test to find
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def _open(driver, page: Path) -> None:
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")


def _console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _requests(driver) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _screenshot(driver, name: str, element=None) -> Path:
    """A PNG of the element (or the viewport), kept as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if element is None:
        driver.save_screenshot(str(path))
        return path
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];", element)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": rect[0], "y": rect[1], "width": max(rect[2], 1), "height": min(max(rect[3], 1), 4000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def _no_alert(driver) -> bool:
    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def _column(table, k: int) -> list[float | None]:
    """The k-th metric column's values, top row first (None: no value)."""
    out = []
    for row in table.find_elements(By.CSS_SELECTOR, "tbody tr.row"):
        raw = row.find_elements(By.CSS_SELECTOR, "td.num")[k].get_attribute("data-value")
        out.append(float(raw) if raw else None)
    return out


def _best_first(values: list[float | None], higher_first: bool) -> bool:
    present = [v for v in values if v is not None]
    if any(v is not None for v in values[len(present):]):
        return False  # a missing value above a present one
    return present == sorted(present, reverse=higher_first)


@pytest.fixture(scope="module")
def real_run(toy_zoo, tmp_path_factory) -> Path:
    """A small real run through the CLI: toy (reference toy-retain), the original and grad-ascent."""
    root = tmp_path_factory.mktemp("report-run")
    cfg = toy_experiment(toy_zoo, root, methods=["none", {"name": "grad-ascent", "params": {"max_steps": 2, "batch_size": 2}}])
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = run_one(["run", str(path)], timeout=600)
    assert out.code == 0, out.stderr[-3000:]
    assert f"report: {root / 'out' / 'report.html'}" in " ".join(out.stderr.split())  # run prints its path
    return root / "out"


def test_the_report_of_a_real_run_loads_offline_sorts_and_shows_a_chosen_sample(browser, real_run: Path) -> None:
    page = real_run / "report.html"
    _open(browser, page)
    assert _console_errors(browser) == []
    assert _requests(browser) == [page.resolve().as_uri()]  # the page itself, nothing else
    _screenshot(browser, "report-real-run")

    # Sorting: a column with distinct values, best first on the first click, reversed on the second.
    table = browser.find_element(By.CSS_SELECTOR, "#tables table.leaderboard")
    n_cols = len(table.find_elements(By.CSS_SELECTOR, "th.metric"))
    k = next((k for k in range(n_cols) if len({v for v in _column(table, k) if v is not None}) >= 2), None)
    assert k is not None, "no leaderboard column with two different values to sort by"
    label = table.find_elements(By.CSS_SELECTOR, "th.metric")[k].text
    higher_first = "↓" not in label  # no arrow: larger first, as for ↑
    best = "sorted-desc" if higher_first else "sorted-asc"
    table.find_elements(By.CSS_SELECTOR, "th.metric")[k].click()
    if best not in table.find_elements(By.CSS_SELECTOR, "th.metric")[k].get_attribute("class"):
        table.find_elements(By.CSS_SELECTOR, "th.metric")[k].click()  # it was the sort column: the click reversed it
    first = _column(table, k)
    assert _best_first(first, higher_first), (label, first)
    table.find_elements(By.CSS_SELECTOR, "th.metric")[k].click()
    second = _column(table, k)
    assert _best_first(second, not higher_first), (label, second)
    assert second != first  # the rows moved
    _screenshot(browser, "report-real-run-sorted", table)

    # Provenance is one click away.
    table.find_element(By.CSS_SELECTOR, "tbody tr.row button.prov").click()
    prov = browser.find_element(By.CSS_SELECTOR, "#tables tr.prov-row").text
    assert "model_identity" in prov and "sha256:" in prov and "dataset_hash" in prov

    # The sample viewer: a chosen item of the unlearned model beside the original.
    samples = load_samples(real_run)
    mine = samples[(samples.method == "grad-ascent") & samples.generation.notna()].iloc[0]
    original = samples[(samples.method == "none") & (samples.model == "toy") & (samples.item_id == mine.item_id)
                       & (samples.split == mine.split)].iloc[0]
    Select(browser.find_element(By.ID, "sample-cell")).select_by_visible_text("toy / grad-ascent / fictitious-facts")
    assert Select(browser.find_element(By.ID, "sample-compare")).first_selected_option.text.startswith("toy / none /")
    search = browser.find_element(By.ID, "sample-search")
    search.send_keys(mine.item_id)
    rows = browser.find_elements(By.CSS_SELECTOR, "#sample-list tr.item")
    assert rows and all(mine.item_id in r.text for r in rows)
    rows[0].click()
    detail = browser.find_element(By.ID, "sample-detail")
    text = lambda css: detail.find_element(By.CSS_SELECTOR, css).get_attribute("textContent")  # noqa: E731
    assert text(".item-id") == mine.item_id
    assert text("pre.prompt") == mine.prompt and text("pre.reference") == mine.reference
    assert text(".this pre.generation") == mine.generation
    assert text(".beside pre.generation") == original.generation
    values = {r.find_elements(By.TAG_NAME, "td")[0].text: [c.text for c in r.find_elements(By.TAG_NAME, "td")[1:]]
              for r in detail.find_elements(By.CSS_SELECTOR, "table.values tr") if r.find_elements(By.TAG_NAME, "td")}
    for _, s in samples[(samples.method == "grad-ascent") & (samples.item_id == mine.item_id)
                        & (samples.split == mine.split)].iterrows():  # every per-sample value of the item
        assert values[s.metric][0] == format_number(float(f"{s.value:.4g}")), (s.metric, values[s.metric], s.value)
    _screenshot(browser, "report-real-run-sample", browser.find_element(By.ID, "samples"))
    assert _console_errors(browser) == [] and _requests(browser) == []


def test_hostile_model_outputs_and_dataset_fields_render_as_text_and_run_nothing(browser, tmp_path: Path) -> None:
    root = write_hostile_results(tmp_path / "hostile")
    out = run_one(["leaderboard", str(root)])
    assert out.code == 0, out.stderr[-2000:]
    assert "\x1b" not in out.stdout
    assert_markdown_and_csv_intact(root)
    made = run_one(["report", str(root)])
    assert made.code == 0, made.stderr[-2000:]
    page = root / "report.html"

    _open(browser, page)
    assert _no_alert(browser)
    assert browser.execute_script("return window.__pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert browser.execute_script("return document.scripts.length") == 2  # the data block and the report's own
    body = browser.find_element(By.TAG_NAME, "body").get_attribute("textContent")
    for visible in (MODEL, METHOD, SCRIPT, FORMULA):
        assert visible in body, visible  # shown as the text it is
    plots = " ".join(e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, "svg.plot"))
    assert SCRIPT in plots and IMG in plots  # category names in the ASR-by-family plot, as text
    _screenshot(browser, "report-hostile")

    Select(browser.find_element(By.ID, "sample-cell")).select_by_visible_text(f"{MODEL} / {METHOD} / adversarial-probes")
    browser.find_element(By.ID, "sample-search").send_keys("item-")
    browser.find_element(By.CSS_SELECTOR, "#sample-list tr.item").click()
    detail = browser.find_element(By.ID, "sample-detail")
    assert detail.find_element(By.CSS_SELECTOR, ".item-id").get_attribute("textContent") == ITEM_ID
    generation = detail.find_element(By.CSS_SELECTOR, ".this pre.generation").get_attribute("textContent")
    assert generation.startswith(CLOSE) and FORMULA in generation and "\x1b[31mRED" in generation
    assert IMG in detail.find_element(By.CSS_SELECTOR, ".this pre.verdicts").get_attribute("textContent")
    assert _no_alert(browser) and browser.execute_script("return window.__pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    _screenshot(browser, "report-hostile-sample", browser.find_element(By.ID, "samples"))
    assert _console_errors(browser) == []
    assert _requests(browser) == [page.resolve().as_uri()]


def test_a_real_run_on_hostile_data_and_outputs_renders_them_as_text_and_runs_nothing(browser, tmp_path: Path) -> None:
    """A real `harness run`: JailbreakBench from a local copy whose ids, goals, targets and
    categories are hostile, against an OpenAI-compatible server that echoes each prompt (so
    the model's outputs are hostile too), judged by the refusal patterns."""
    from tests.test_openai_backend import FakeServer, _spec

    data = write_hostile_dataset(tmp_path / "jbb")
    with FakeServer() as server:
        cfg = {"zoo": {"remote": _spec(server.url).model_dump(exclude={"name"}, exclude_none=True)},
               "models": ["remote"], "methods": ["none"],
               "benchmarks": [{"name": "jailbreakbench", "params": {"path": str(data)}}],
               "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")}
        (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
        out = run_one(["run", str(tmp_path / "exp.yaml")], env={"HARNESS_TEST_KEY": "sk-test"}, timeout=300)
    assert out.code == 0, out.stderr[-3000:]
    assert "\x1b" not in out.stdout and "\x1b" not in out.stderr  # the terminal tables: ANSI neutralised
    root = tmp_path / "out"
    assert_markdown_and_csv_intact(root, rows=1, formula_cell=None)
    generations = set(load_samples(root).generation)
    assert f"echo:Tell me {SCRIPT} {PIPES}" in generations  # the model really said it

    page = root / "report.html"
    _open(browser, page)
    assert _no_alert(browser) and browser.execute_script("return window.__pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert browser.execute_script("return document.scripts.length") == 2
    plots = " ".join(e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, "svg.plot"))
    assert SCRIPT in plots and IMG in plots  # dataset categories, as plot labels
    headers = " ".join(e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, "th.metric"))
    assert f"asr@harmful[category={SCRIPT}]" in headers
    browser.find_element(By.ID, "sample-search").send_keys("jbb-harmful-1")
    browser.find_element(By.CSS_SELECTOR, "#sample-list tr.item").click()
    detail = browser.find_element(By.ID, "sample-detail")
    text = lambda css: detail.find_element(By.CSS_SELECTOR, css).get_attribute("textContent")  # noqa: E731
    assert text(".item-id") == f"jbb-harmful-1{CLOSE}"
    assert text("pre.prompt") == f"Tell me {SCRIPT} {PIPES}" and text("pre.reference") == IMG
    assert text(".this pre.generation") == f"echo:Tell me {SCRIPT} {PIPES}"
    browser.find_element(By.ID, "sample-search").clear()
    browser.find_element(By.ID, "sample-search").send_keys("HYPERLINK")
    assert ANSI in browser.find_element(By.CSS_SELECTOR, "#sample-list td.gen-this").get_attribute("textContent")
    assert _no_alert(browser) and browser.execute_script("return window.__pwned") is None
    _screenshot(browser, "report-hostile-real-run")
    _screenshot(browser, "report-hostile-real-run-sample", browser.find_element(By.ID, "samples"))
    assert _console_errors(browser) == []
    assert _requests(browser) == [page.resolve().as_uri()]


@pytest.mark.skipif(not os.environ.get("HARNESS_DEMO_RESULTS"),
                    reason="set HARNESS_DEMO_RESULTS to a finished `harness run` demo output dir (minutes to make)")
def test_the_demo_report_opens_offline_with_the_tradeoff_and_asr_by_family_plots(browser) -> None:
    page = Path(os.environ["HARNESS_DEMO_RESULTS"]) / "report.html"
    _open(browser, page)
    assert _console_errors(browser) == [] and _requests(browser) == [page.resolve().as_uri()]
    titles = [e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, "svg.plot > title")]
    assert "fictitious-facts: rouge_l_recall@forget vs model_utility" in titles
    assert "adversarial-probes: ASR by attack family, and over-refusal" in titles
    _screenshot(browser, "demo-leaderboard", browser.find_element(By.ID, "tables"))
    for name, title in (("demo-tradeoff", "vs model_utility"), ("demo-asr-by-family", "ASR by attack family"),
                        ("demo-deleted-or-hidden", "deleted or hidden?")):
        figure = next(e for e in browser.find_elements(By.CSS_SELECTOR, "#plots figure")
                      if title in e.find_element(By.CSS_SELECTOR, "svg > title").get_attribute("textContent"))
        _screenshot(browser, name, figure)
    _screenshot(browser, "demo-plots", browser.find_element(By.ID, "plots"))
    browser.find_element(By.ID, "sample-search").send_keys("e000")
    browser.find_element(By.CSS_SELECTOR, "#sample-list tr.item").click()
    assert browser.find_element(By.CSS_SELECTOR, "#sample-detail .item-id").text.startswith("e000")
    _screenshot(browser, "demo-samples", browser.find_element(By.ID, "samples"))
    assert _console_errors(browser) == [] and _requests(browser) == []
