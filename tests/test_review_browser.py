"""`keras-amb review` in a real headless Chromium: open the gallery, correct a
misclassified image's map with the brush, save it, fine-tune for one epoch on
it, and check that the image's map moved towards the correction.

Needs Debian's `chromium` and `chromium-driver` (`apt-get install chromium
chromium-driver`; `.ci/run` installs them). KERAS_AMB_SCREENSHOTS=DIR saves
the screenshots of the README (gallery, editor mid-stroke, before/after).
"""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import keras_amb_cli

pytestmark = [pytest.mark.slow, pytest.mark.backend_independent]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

CONFIG = """\
dataset: synthetic
synthetic: {num_classes: 4, image_size: 32, train_size: 64, val_size: 16, test_size: 16}
backbone: resnet_tiny
image_size: 32
batch_size: 16
epochs: 1
attention_images: 0
"""


def _start_review(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    exe = os.path.join(os.path.dirname(sys.executable), "keras-amb")
    process = subprocess.Popen([exe, "review"] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    deadline = time.time() + 180
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Reviewing "):
            return process, line.split(" at ")[1].split()[0]
    process.kill()
    raise AssertionError("review did not start:\n" + "".join(lines))


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _attention(model_path, image):
    import keras

    from keras_amb.explain.visualize import map_on_image
    from keras_amb.inference import preprocess
    from keras_amb.app.runs import load_model

    model = load_model(model_path)
    x = preprocess(image, model.image_size, model.resize_ratio)[None]
    values = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(x)["attention"]))[0]
    return map_on_image(values, image.shape[0], image.shape[1], model.resize_ratio) / 255.0


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="Debian's chromium and chromium-driver are not installed "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
def test_correct_a_map_in_the_browser_and_fine_tune_on_it(tmp_path):
    pytest.importorskip("flask", reason="keras-amb[review] (Flask) is not installed")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = os.environ.get("KERAS_AMB_SCREENSHOTS")
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    run = str(tmp_path / "run")
    result = keras_amb_cli(["train", "--config", str(config), "--architecture", "abn",
                            "--output", run, "--seed", "1"])
    assert result.returncode == 0, result.stderr[-3000:]
    process, url = _start_review([run, "--port", "0"])
    browser = _browser()
    try:
        wait = WebDriverWait(browser, 120)
        browser.get(url)
        wait.until(lambda b: b.find_element(By.ID, "grid").get_attribute("data-ready") == "1")
        # Every image scored, the page placed by all the scores.
        wait.until(lambda b: b.find_element(By.ID, "scoring").text == "64 images")
        browser.find_element(By.ID, "refresh").click()
        wait.until(lambda b: b.find_element(By.ID, "grid").get_attribute("data-ready") == "1")
        wait.until(lambda b: "misclassified images corrected" in
                   b.find_element(By.ID, "counter").text)
        counter = browser.find_element(By.ID, "counter").text
        cards = browser.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == 24
        flags = [c.get_attribute("data-misclassified") for c in cards]
        assert flags[0] == "1", "misclassified images come first"
        assert flags == sorted(flags, reverse=True)
        assert counter.startswith("0 of ")
        wait.until(lambda b: all(i.get_attribute("naturalWidth") != "0"
                                 for i in b.find_elements(By.CSS_SELECTOR, ".card img")))
        if shots:
            browser.save_screenshot(os.path.join(shots, "review_gallery.png"))
        key = cards[0].get_attribute("data-key")
        cards[0].click()
        wait.until(lambda b: b.find_element(By.ID, "editor-key").text == key)
        wait.until(lambda b: b.execute_script(
            "return !document.getElementById('editor-view').hidden"))
        canvas = browser.find_element(By.ID, "map-canvas")
        browser.find_element(By.ID, "clear").click()
        width = canvas.size["width"]
        # One stroke along the top-left quarter: from (1/8, 1/4) to (3/8, 1/4) of the image.
        chain = ActionChains(browser)
        chain.move_to_element_with_offset(canvas, -width * 3 // 8, -width // 4).click_and_hold()
        for _ in range(8):
            chain.move_by_offset(width // 32, 0)
        chain.perform()
        if shots:
            browser.save_screenshot(os.path.join(shots, "review_editor.png"))
        ActionChains(browser).release().perform()
        browser.find_element(By.ID, "save").click()
        wait.until(lambda b: "Saved the corrected map" in b.find_element(By.ID, "message").text)
        assert browser.find_element(By.ID, "counter").text.startswith("1 of ")

        # The PNG on disk: keyed by split and example id, the stroke painted,
        # everything else cleared.
        split, example = key.split("/")
        path = os.path.join(run, "review", "maps", split, example + ".png")
        saved = np.asarray(Image.open(path))
        assert saved.shape == (32, 32) and saved.dtype == np.uint8
        assert saved[8, 8] > 100 and saved[8, 10] > 100, saved[6:11, 2:14]
        assert saved[24:, :].max() == 0 and saved[:, 24:].max() == 0
        assert os.path.isfile(os.path.join(run, "review", "maps", "index.json"))

        browser.find_element(By.ID, "tab-finetune").click()
        epochs = browser.find_element(By.ID, "epochs")
        epochs.clear()
        epochs.send_keys("1")
        wait.until(lambda b: "--epochs 1" in b.find_element(By.ID, "command").text)
        command = browser.find_element(By.ID, "command").text
        assert f"--init-from {run}" in command and "--attention-targets" in command
        browser.find_element(By.ID, "start").click()
        WebDriverWait(browser, 400).until(
            lambda b: b.find_element(By.ID, "progress").get_attribute("data-state")
            in ("finished", "failed"))
        log = browser.find_element(By.ID, "log").text
        assert browser.find_element(By.ID, "progress").get_attribute("data-state") == \
            "finished", log[-3000:]
        assert "epoch 1 of 1" in browser.find_element(By.ID, "progress").text
        wait.until(lambda b: b.find_element(By.ID, "before-after").get_attribute("data-ready")
                   == "1")
        rows = browser.find_elements(By.CSS_SELECTOR, "#before-after .row")
        assert [r.get_attribute("data-key") for r in rows] == [key]
        before, after = (float(rows[0].get_attribute(a)) for a in ("data-before", "data-after"))
        if shots:
            browser.execute_script("arguments[0].scrollIntoView()", rows[0])
            browser.save_screenshot(os.path.join(shots, "review_before_after.png"))
    finally:
        browser.quit()
        process.terminate()
        process.wait(30)

    # The map moved towards the correction: checked here from the model files.
    from keras_amb.data import synthetic

    finetuned = [d for d in os.listdir(os.path.join(run, "review")) if d.startswith("finetune-")
                 and os.path.isdir(os.path.join(run, "review", d))]
    assert len(finetuned) == 1
    data_config = synthetic.make_config({"num_classes": 4, "image_size": 32, "train_size": 64,
                                         "val_size": 16, "test_size": 16})
    image = synthetic.make_example(data_config, split, int(example))["image"]
    target = saved / 255.0
    distance_before = np.abs(_attention(os.path.join(run, "model.keras"), image) - target).mean()
    distance_after = np.abs(_attention(os.path.join(run, "review", finetuned[0], "model.keras"),
                                       image) - target).mean()
    assert distance_after < distance_before - 0.02, (distance_before, distance_after)
    assert before == pytest.approx(distance_before, abs=0.01)
    assert after == pytest.approx(distance_after, abs=0.01)
