import json
import os

import numpy as np
import pytest

from keras_amb.app import config as amb_config
from keras_amb import losses
from keras_amb.app import runs
from keras_amb.app import trainer
from keras_amb.data import load_source
from keras_amb.data import prepare
from keras_amb.explain import maps as explain_maps
from keras_amb.explain import metrics
from keras_amb.app.runs import load_model
from tests.conftest import BACKEND
from tests.conftest import keras_amb_cli
from tests.conftest import run_python
from tests.helpers import trained_once
from tests.images import write_bad_images
from tests.images import write_good_images
from tests.images import write_huge_image

# === Metric functions against hand-built cases ===

COLOURS = np.array([[250, 20, 20], [20, 250, 20], [20, 20, 250], [250, 250, 20]], np.float32)


def _square_images(n=40, size=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 4).astype(np.int32)
    images = np.full((n, size, size, 3), 128.0, np.float32)
    masks = np.zeros((n, size, size), np.float32)
    for i in range(n):
        r, c = rng.integers(0, size - 5, 2)
        images[i, r : r + 5, c : c + 5] = COLOURS[labels[i]]
        masks[i, r : r + 5, c : c + 5] = 1
    return images, labels, masks


def _colour_classifier(images):
    """Knows the class from the square's colour; says class 0 when none is seen."""
    flat = images.reshape(len(images), -1, 3)
    saturation = flat.max(-1) - flat.min(-1)
    logits = np.full((len(images), 4), -5.0, np.float32)
    for i in range(len(images)):
        pixels = flat[i][saturation[i] > 100]
        if len(pixels) == 0:
            logits[i, 0] = 5.0
            continue
        colour = pixels.mean(0)
        logits[i, np.argmin(((COLOURS - colour) ** 2).sum(-1))] = 5.0
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_exact_map_inserts_well_and_deletes_to_chance():
    images, labels, masks = _square_images()
    assert (np.argmax(_colour_classifier(images), -1) == labels).mean() == 1.0
    ts, ins, dele = metrics.threshold_curves(_colour_classifier, images, labels, masks)
    assert metrics.auc(ins.mean(0), ts) == pytest.approx(1.0, abs=1e-6)
    assert metrics.auc(dele.mean(0), ts) == pytest.approx(0.25, abs=0.05)  # chance
    ts, ins_r, dele_r = metrics.threshold_curves(_colour_classifier, images, labels, 1 - masks)
    assert metrics.auc(ins_r.mean(0), ts) < 0.4
    assert metrics.auc(dele_r.mean(0), ts) > 0.85


def test_rise_protocol_orders_good_and_reversed_maps():
    images, labels, masks = _square_images()
    ins, dele = metrics.rise_curves(_colour_classifier, images, masks, steps=16)
    ins_r, dele_r = metrics.rise_curves(_colour_classifier, images, 1 - masks, steps=16)
    assert ins.shape == (40, 17)
    assert metrics.auc(ins.mean(0)) > metrics.auc(ins_r.mean(0)) + 0.3
    assert metrics.auc(dele.mean(0)) < metrics.auc(dele_r.mean(0)) - 0.3
    # The end points: all pixels inserted is the image; none deleted is the image.
    np.testing.assert_allclose(ins[:, -1], dele[:, 0], atol=1e-6)


def test_threshold_sweep_uses_the_map_as_given():
    images, labels, masks = _square_images()
    # A faint map: 0.3 off the square, 0.6 on it (raw attention in (0, 1)).
    faint = 0.3 + 0.3 * masks
    ts, ins, dele = metrics.threshold_curves(_colour_classifier, images, labels, faint)
    above = ts > 0.6 + 1e-9
    # Above its maximum nothing is kept: the paper's thresholds are on the
    # scale of the map, not of a rescaled one.
    assert ins[:, above].mean() == pytest.approx(0.25, abs=0.05)
    assert ins[:, (ts > 0.3 + 1e-9) & (ts <= 0.6)].mean() == pytest.approx(1.0)
    assert dele[:, above].mean() == pytest.approx(1.0)
    normalised = explain_maps.normalise(faint)
    assert normalised.max() == pytest.approx(1.0) and normalised.min() == pytest.approx(0.0)
    _, ins_n, _ = metrics.threshold_curves(_colour_classifier, images, labels, normalised)
    assert metrics.auc(ins_n.mean(0), ts) > metrics.auc(ins.mean(0), ts) + 0.2


def test_part_coverage_hand_computed():
    part1 = np.zeros((1, 10, 10), np.float32)
    part2 = np.zeros((1, 10, 10), np.float32)
    part1[0, :2, :2] = 1  # 4% of the image
    part2[0, -2:, -2:] = 1
    heat = np.full((1, 10, 10), 0.1, np.float32)
    heat[0, :2, :2] = 1.0
    (e1, e2), (c1, c2) = metrics.part_coverage(heat, [part1, part2])
    total = 4 * 1.0 + 96 * 0.1
    assert e1[0] == pytest.approx(4.0 / total, rel=1e-5)
    assert e2[0] == pytest.approx(0.4 / total, rel=1e-5)
    # Density ratio: part 1 holds 29% of the mass on 4% of the area (7.4x),
    # part 2 2.9% on 4% (0.74x): only part 1 is covered.
    assert bool(c1[0]) and not bool(c2[0])
    heat[0, -2:, -2:] = 1.0
    _, (c1, c2) = metrics.part_coverage(heat, [part1, part2])
    assert bool(c1[0]) and bool(c2[0])


def test_localisation_and_helpers():
    _, _, masks = _square_images(n=4)
    pointing, energy, iou = metrics.localisation(masks, masks)
    np.testing.assert_allclose(pointing, 1.0)
    np.testing.assert_allclose(energy, 1.0, atol=1e-6)
    np.testing.assert_allclose(iou, 1.0, atol=1e-6)
    pointing_r, energy_r, _ = metrics.localisation(1 - masks, masks)
    np.testing.assert_allclose(pointing_r, 0.0)
    assert energy_r.max() < 0.05
    flat = np.full((2, 20, 20, 3), 77.0, np.float32)
    np.testing.assert_allclose(metrics.gaussian_blur(flat), flat, atol=1e-3)
    assert metrics.auc(np.ones(5)) == pytest.approx(1.0)
    empty = metrics.localisation(masks, np.zeros_like(masks))[0]
    assert np.isnan(empty).all()
    # A floor of 0.2 under a map that is 0.8 on the object: the raw energy is
    # 0.8a / (0.8a + 0.2(1 - a)) for an object of area fraction a; min-max
    # normalised (how evaluation also scores every map) the floor is gone.
    floored = 0.2 + 0.6 * masks
    a = masks.mean(axis=(1, 2))
    np.testing.assert_allclose(metrics.localisation(floored, masks)[1],
                               0.8 * a / (0.8 * a + 0.2 * (1 - a)), rtol=1e-5)
    np.testing.assert_allclose(metrics.localisation(explain_maps.normalise(floored), masks)[1],
                               1.0, atol=1e-6)


# === A model trained on the synthetic data (shared by the tests below) ===

TRAIN = {
    "dataset": "synthetic",
    "synthetic": {"train_size": 600, "val_size": 64, "test_size": 96},
    "backbone": "resnet_tiny", "image_size": 64, "batch_size": 32, "architecture": "abn",
    "epochs": 4, "attention_images": 0, "cache": True, "crop_scale": [0.7, 1.0],
    "resize_ratio": 1.0, "optimizer": {"learning_rate": 0.05},
}


def train_here(run_dir, **overrides):
    config = amb_config.resolve(None, dict(TRAIN, **overrides))
    return trainer.train(config, run_dir=run_dir, verbose=0, log=lambda line: None).run_dir


def _train(root, name, **overrides):
    """Trains under TensorFlow whatever the backend under test (a model file
    loads under every backend, tests/test_model.py): these tests are about
    the maps of a trained model, and TensorFlow trains this one 2-3x faster
    than torch and JAX here. Training on each backend, attention targets
    included, is tested in tests/test_cli.py. So the same run serves every
    backend's suite: trained once per `tests/run_backends.sh`
    (`trained_once`; about 50 s of the 2 cores saved for each other backend)."""

    def train(run_dir):
        if BACKEND == "tensorflow":
            train_here(run_dir, **overrides)
            return
        done = run_python(f"from tests.test_explain import train_here; "
                          f"train_here({run_dir!r}, **{overrides!r})", backend="tensorflow",
                          timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    return trained_once(f"explain-{name}", train, str(root / name))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    return {
        "abn": _train(root, "abn"),
        "human": _train(root, "human", attention_targets="masks", attention_target_weight=10.0),
    }


@pytest.mark.backend_independent("torch")  # spreads the suites' time: TensorFlow's is the longest
@pytest.mark.slow  # the trainings of `runs_dir` are the slow tier's
def test_an_abn_run_keeps_one_model_under_both_names(runs_dir):
    # Copied, not serialised twice: the same bytes, and it loads.
    import filecmp

    model, abn = (os.path.join(runs_dir["abn"], name) for name in ("model.keras", "abn.keras"))
    assert filecmp.cmp(model, abn, shallow=False)
    assert len(runs.load_model(abn).get_class_names()) >= 2


@pytest.fixture(scope="module")
def test_batch(runs_dir):
    source = load_source("synthetic", synthetic_params=TRAIN["synthetic"])
    batch = next(iter(prepare(source.examples("test"), 64, 96, False, resize_ratio=1.0, keep_masks=True)))
    return {k: v.numpy() for k, v in batch.items()}


@pytest.mark.slow
def test_cam_and_gradcam_shapes_and_sanity(runs_dir, test_batch):
    model = load_model(os.path.join(runs_dir["abn"], "model.keras"))
    images, masks = test_batch["images"], test_batch["object_mask"]
    rng = np.random.default_rng(0)
    random_pointing = np.nanmean(metrics.localisation(rng.random((len(images), 16, 16)), masks)[0])
    for method in explain_maps.METHODS:
        maps = explain_maps.compute(model, images, method)
        assert maps.shape[0] == len(images) and maps.ndim == 3, method
        assert maps.min() >= 0.0 and maps.max() <= 1.0 and np.isfinite(maps).all(), method
        pointing = np.nanmean(metrics.localisation(maps, masks)[0])
        # A trained model's maps peak on the object more often than random maps.
        assert pointing > random_pointing + 0.15, (method, pointing, random_pointing)


@pytest.mark.slow
def test_human_knowledge_loss_pulls_the_map_to_the_targets(runs_dir, test_batch):
    errors = {}
    for name in ("abn", "human"):
        model = load_model(os.path.join(runs_dir[name], "model.keras"))
        attention = model.predict(test_batch["images"], verbose=0)["attention"]
        errors[name] = float(losses.attention_target_loss(attention, test_batch["part_mask"]))
    assert errors["human"] < 0.5 * errors["abn"], errors


@pytest.mark.slow
def test_evaluate_json_keys_and_ranges(runs_dir):
    result = keras_amb_cli(["evaluate", "--model", runs_dir["abn"], "--json", "--limit", "64"])
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("top1", "top5", "insertion", "deletion", "score", "rise_insertion",
                "rise_deletion", "pointing_game"):
        assert key in data, key
    assert data["params"]["threshold_map"].startswith("raw attention map")
    for key in ("top1", "top5", "insertion", "deletion", "rise_insertion", "rise_deletion",
                "pointing_game", "iou", "energy_inside"):
        assert 0.0 <= data[key] <= 1.0, (key, data[key])
    assert data["top1"] > 0.3  # well above chance (1/8) after training
    assert data["score"] == pytest.approx(data["insertion"] - data["deletion"])
    assert data["examples"] == 64 and data["params"]["rise_steps"] == 16
    assert os.path.isfile(os.path.join(runs_dir["abn"], "evaluation", "test-attention-curves.png"))


def test_evaluate_reports_part_coverage_and_occlusion_on_two_part_data():
    from keras_amb import AttentionBranchNetwork
    from keras_amb.explain import evaluation

    source = load_source("synthetic", synthetic_params={
        "version": "2", "train_size": 8, "val_size": 8, "test_size": 12})
    model = AttentionBranchNetwork(num_classes=source.num_classes, backbone="resnet_tiny",
                                   image_size=64)
    model.compile("sgd")
    result = evaluation.evaluate(model, source, "test", batch_size=12, progress=False,
                                 thresholds=3, rise_steps=2)
    per_image = result["per_image"]
    for key in ("energy_part1", "energy_part2", "coverage_both_parts",
                "top1_occluded_part1", "top1_occluded_part2", "logp_occluded_part1",
                "logp_occluded_part2", "density_other_occluded_part1",
                "density_other_occluded_part2"):
        assert len(per_image[key]) == 12, key
        assert result[key] == pytest.approx(np.nanmean(per_image[key]))
    # The log-probability is the true class's: at most 0, and below log(1/2)
    # wherever that class was not the top one.
    logp = np.asarray(per_image["logp_occluded_part1"])
    assert (logp <= 0).all()
    hit = np.asarray(per_image["top1_occluded_part1"]) > 0.5
    assert (logp[~hit] < np.log(0.5) + 1e-6).all()
    # The two parts' shares of the map add up to the share of their union.
    np.testing.assert_allclose(
        np.add(per_image["energy_part1"], per_image["energy_part2"]),
        per_image["energy_inside_part"], atol=1e-5)
    assert set(per_image["coverage_both_parts"]) <= {0.0, 1.0}
    summary = evaluation.summary(result)
    assert "per_image" not in summary and summary["coverage_both_parts"] is not None

    # Every method in one pass gives what one pass per method gives.
    together = evaluation.evaluate_methods(model, source, "test", batch_size=12,
                                           progress=False, thresholds=3, rise_steps=2)
    assert set(together) == {"attention", "cam", "gradcam"}
    # Grad-CAM comes min-max normalised: its two energies are one number.
    gradcam = together["gradcam"]["per_image"]
    np.testing.assert_allclose(gradcam["energy_inside_normalised"],
                               gradcam["energy_inside"], atol=1e-5)
    assert len(together["attention"]["per_image"]["energy_inside_normalised"]) == 12
    np.testing.assert_equal(together["attention"]["per_image"], per_image)
    alone = evaluation.evaluate(model, source, "test", batch_size=12, progress=False,
                                method="gradcam", thresholds=3, rise_steps=2)
    assert set(alone["per_image"]) == set(together["gradcam"]["per_image"])
    for key, values in alone["per_image"].items():
        np.testing.assert_allclose(together["gradcam"]["per_image"][key], values,
                                   atol=1e-6, err_msg=key)
    assert together["cam"]["method"] == "cam" and together["cam"]["examples"] == 12


# The files (formats, a huge image, broken ones) are what is under test, and
# no backend decodes them: `--method all --compare` itself is run under each
# backend by tests/test_cli.py::test_visualize_labels_rows_and_keeps_every_models_maps.
@pytest.mark.backend_independent("torch")
@pytest.mark.slow
def test_visualize_every_kind_of_image(runs_dir, tmp_path):
    inputs = tmp_path / "in"
    good = write_good_images(str(inputs))
    from PIL import Image

    write_huge_image(inputs / "huge.jpg")
    bad = write_bad_images(str(tmp_path / "bad"))
    out = tmp_path / "out"
    args = ["visualize", str(inputs), *bad.values(), "--model", runs_dir["abn"],
            "--compare", runs_dir["human"], "--method", "all", "--save-maps", "--output", str(out)]
    result = keras_amb_cli(args)
    assert result.returncode != 0, "a broken image makes the exit code non-zero"
    assert "Traceback" not in result.stderr
    for path in bad.values():
        assert path in result.stderr
    for name in list(good) + ["huge.jpg"]:
        stem = os.path.splitext(name)[0]
        assert os.path.isfile(out / f"{stem}.png"), name
        assert os.path.isfile(out / "maps" / f"{stem}.png"), name
        saved = np.load(out / "maps" / f"{stem}.npy")
        assert saved.shape == (16, 16) and 0 <= saved.min() and saved.max() <= 1
    figure = Image.open(out / "rgb.png")
    assert figure.size[0] > 1400 and figure.size[1] > 700  # two rows, five columns
