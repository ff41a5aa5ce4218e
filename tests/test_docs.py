"""The docs site (#38 §2): `mkdocs build --strict` succeeds from the
checkout, the command-line reference is generated from the click commands
and the API reference from the docstrings, and the built pages open in a
real headless Chromium. KERAS_AMB_SCREENSHOTS=DIR saves what the browser saw.
"""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_review_browser import CHROMEDRIVER
from tests.test_review_browser import CHROMIUM
from tests.test_review_browser import _browser

pytestmark = pytest.mark.backend_independent("jax")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="the docs extra (mkdocs) is not installed")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, KERAS_AMB_DEFER_IMPORTS="1", NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(out)], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_references_are_generated_from_the_code(site):
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    for needle in ("keras-amb train", "--restart-stage", "--weight-decay", "keras-amb export",
                   "Exit codes"):
        assert needle in cli, needle
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for needle in ("load_model", "predict", "AttentionMiningNetwork", "MINING_DEFAULTS"):
        assert needle in api, needle
    for page in ("guides/getting-started", "guides/own-images", "guides/explaining",
                 "guides/review", "guides/serving", "guides/scale", "guides/paper",
                 "method", "evidence", "speed"):
        assert (site / page / "index.html").is_file(), page


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="needs Debian's chromium and chromium-driver")
def test_the_built_site_opens_in_a_browser(site):
    pytest.importorskip("selenium")
    shots = os.environ.get("KERAS_AMB_SCREENSHOTS")
    browser = _browser()
    try:
        for page, needle in (("index.html", "explain themselves"),
                             ("cli/index.html", "keras-amb train"),
                             ("guides/review/index.html", "review"),
                             ("api/index.html", "main_step_loss")):
            browser.get((site / page).as_uri())
            text = browser.find_element("tag name", "body").text
            assert needle in text, (page, text[:300])
            images = browser.execute_script(
                "return Array.from(document.images).filter("
                "i => i.complete && i.naturalWidth === 0).map(i => i.src)")
            assert images == [], images  # no broken picture
            if shots:
                os.makedirs(shots, exist_ok=True)
                browser.save_screenshot(os.path.join(
                    shots, "docs-" + page.replace("/", "-").replace(".html", ".png")))
    finally:
        browser.quit()


def test_the_results_tables_are_the_committed_json():
    """The README's and the evidence page's results tables are generated
    from `benchmarks/results/*.json` (`benchmarks/results_tables.py`): a
    number copied by hand, or a JSON updated without its tables, fails."""
    script = os.path.join(REPO, "benchmarks", "results_tables.py")
    done = subprocess.run([sys.executable, script, "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # A number edited by hand is put back from the JSON.
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import results_tables
    finally:
        sys.path.pop(0)
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    table = results_tables.render("maps_v1")
    assert table in readme and "| +61.5 ± 1.2 |" in table
    edited = readme.replace("| +61.5 ± 1.2 |", "| +70.0 ± 1.2 |")
    assert results_tables.update(edited) == readme
