import dataclasses
import os
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_amb.app import config as amb_config
from keras_amb.data import BadImagesError
from keras_amb.data import DatasetUnavailableError
from keras_amb.data import ImageReadError
from keras_amb.data import load_source
from keras_amb.data import prepare
from keras_amb.data import read_image
from keras_amb.data import tfds_datasets
from keras_amb.data import synthetic
from keras_amb.data import synthetic_v2
from tests.images import write_bad_images
from tests.images import write_good_images
from tests.images import write_graded_dataset

# === Synthetic ===


def test_synthetic_is_deterministic_and_versioned():
    config = synthetic.SyntheticConfig()
    a = synthetic.make_example(config, "train", 17)
    b = synthetic.make_example(config, "train", 17)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other = synthetic.make_example(synthetic.SyntheticConfig(seed=1), "train", 17)
    assert not np.array_equal(a["image"], other["image"])
    test = synthetic.make_example(config, "test", 17)
    assert not np.array_equal(a["image"], test["image"])
    assert synthetic.SYNTHETIC_VERSION == "1"
    # Frozen default: a fingerprint of version 1's first training images.
    first = synthetic.make_split(config, "train", count=4)
    assert first["label"].tolist() == [7, 2, 5, 1]
    assert int(first["image"].astype(np.int64).sum()) == 6990446


def test_synthetic_classes_differ_only_in_the_part():
    config = synthetic.SyntheticConfig(num_classes=8)
    data = synthetic.make_split(config, "train", count=200)
    part, obj = data["part_mask"].astype(bool), data["object_mask"].astype(bool)
    assert np.all(obj[part]), "the part lies on the object"
    fraction = part.mean(axis=(1, 2))
    assert 0.01 < fraction.mean() < 0.06, "the part is small"
    assert set(data["label"].tolist()) == set(range(8))
    # Off the part, class means are alike: colour statistics of the rest of
    # the image do not tell the classes apart.
    images = data["image"].astype(np.float32)
    rest_means = []
    for k in range(8):
        sel = data["label"] == k
        rest = images[sel][~part[sel]]
        rest_means.append(rest.mean(axis=0))
    spread_rest = np.ptp(np.array(rest_means), axis=0).max()
    part_means = [images[data["label"] == k][part[data["label"] == k]].mean(0) for k in range(8)]
    spread_part = np.ptp(np.array(part_means), axis=0).max()
    assert spread_part > 5 * spread_rest
    boxes = data["box"]
    assert np.all(boxes[:, 0] < boxes[:, 2]) and np.all(boxes[:, 1] < boxes[:, 3])


def test_synthetic_rejects_bad_parameters():
    with pytest.raises(ValueError, match="num_classes=40"):
        synthetic.SyntheticConfig(num_classes=40)
    with pytest.raises(ValueError, match="'parts'"):
        synthetic.make_config({"version": "2", "parts": 3})
    with pytest.raises(ValueError, match="'3'"):
        synthetic.make_config({"version": "4"})


def test_synthetic_v2_is_frozen_and_has_two_cues_per_class():
    config = synthetic.make_config({"version": "2"})
    first = synthetic.make_split(config, "train", count=4)
    assert first["label"].tolist() == [23, 3, 12, 22]
    assert int(first["image"].astype(np.int64).sum()) == V2_FINGERPRINT
    data = synthetic.make_split(config, "train", count=300)
    head, tail = data["part1_mask"].astype(bool), data["part2_mask"].astype(bool)
    assert not (head & tail).any(), "the parts do not overlap"
    np.testing.assert_array_equal(data["part_mask"].astype(bool), head | tail)
    assert np.all(data["object_mask"].astype(bool)[head | tail])
    for part in (head, tail):
        fraction = part.mean(axis=(1, 2))
        assert 0.008 < fraction.mean() < 0.04, "each part is small"
    # Each part alone names the class: its mean colour differs between classes
    # far more than the rest of the image does.
    images = data["image"].astype(np.float32)
    for part in (head, tail):
        means = np.array([images[data["label"] == k][part[data["label"] == k]].mean(0)
                          for k in range(config.num_classes)])
        rest = np.array([images[data["label"] == k][~(head | tail)[data["label"] == k]].mean(0)
                         for k in range(config.num_classes)])
        assert np.ptp(means, axis=0).max() > 5 * np.ptp(rest, axis=0).max()
    assert len(set(synthetic.names_for(config))) == config.num_classes


def test_synthetic_v2_occlusion_paints_over_only_that_part():
    config = synthetic.make_config({"version": "2"})
    for index in range(5):
        original = synthetic_v2.make_example_v2(config, "test", index)
        for part in (1, 2):
            hidden = synthetic_v2.make_example_v2(config, "test", index, occlude=part)
            changed = (hidden["image"] != original["image"]).any(-1)
            assert changed.any() and not changed[original[f"part{part}_mask"] == 0].any()
            assert hidden["label"] == original["label"]
    source = load_source("synthetic", synthetic_params={"version": "2", "test_size": 8})
    assert source.part_names == ("part1_mask", "part2_mask")
    batch = next(iter(source.occluded("test", 2).batch(8)))
    assert batch["image"].shape == (8, 64, 64, 3)
    assert load_source("synthetic").occluded("test", 1) is None


# Sum of the pixels of version 2's first four training images (frozen).
V2_FINGERPRINT = 6508270


# === Pipeline ===


def test_pipeline_batches_and_masks_follow_the_crop():
    source = load_source("synthetic", synthetic_params={"train_size": 32, "val_size": 8, "test_size": 8})
    batch = next(iter(prepare(source.examples("train"), 48, 16, training=True,
                              crop_scale=(0.5, 1.0), keep_masks=True)))
    assert batch["images"].shape == (16, 48, 48, 3)
    images = batch["images"].numpy()
    part = batch["part_mask"].numpy() > 0.5
    assert 0 <= images.min() and images.max() <= 255
    # Head pixels are saturated colours; the background is desaturated.
    saturation = images.max(-1) - images.min(-1)
    assert saturation[part].mean() > saturation[~part].mean() + 40
    x, y = next(iter(prepare(source.examples("test"), 64, 8, training=False, resize_ratio=1.0)))
    assert x.shape == (8, 64, 64, 3) and y.dtype.name == "int32"


def test_flip_and_crop_scale_are_options():
    source = load_source("synthetic", synthetic_params={"train_size": 16, "val_size": 8, "test_size": 8})
    plain = next(iter(prepare(source.examples("train"), 64, 16, False, resize_ratio=1.0,
                              keep_masks=True)))
    originals = plain["images"].numpy()

    def matches(batch):
        return [any(np.allclose(image, original, atol=1e-3) for original in originals)
                for image in batch["images"].numpy()]

    # Crops of the whole image: without flips, training images are the images.
    same = prepare(source.examples("train"), 64, 16, True, crop_scale=(1.0, 1.0), flip=False,
                   keep_masks=True)
    assert all(matches(next(iter(same))))
    flipped = prepare(source.examples("train"), 64, 16, True, crop_scale=(1.0, 1.0), flip=True,
                      keep_masks=True)
    assert not all(matches(next(iter(flipped))))


def test_pipelines_do_not_autotune():
    # tf.data's autotuning thread makes every iterator's teardown wait for its
    # next wake-up: epochs took up to twice their time (see pipeline.py).
    source = load_source("synthetic", synthetic_params={"train_size": 16, "val_size": 8, "test_size": 8})
    dataset = prepare(source.examples("train"), 32, 8, True)
    assert dataset.options().autotune.enabled is False


def test_training_augmentation_is_seeded():
    source = load_source("synthetic", synthetic_params={"train_size": 16, "val_size": 8, "test_size": 8})
    a = next(iter(prepare(source.examples("train"), 32, 16, True, seed=3)))[0].numpy()
    b = next(iter(prepare(source.examples("train"), 32, 16, True, seed=3)))[0].numpy()
    np.testing.assert_array_equal(a, b)


# === Image files and folders ===


def test_read_image_handles_every_common_format(tmp_path):
    for name, path in write_good_images(str(tmp_path)).items():
        image = read_image(path)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3, name
    grey16 = read_image(str(tmp_path / "grey16.png"))
    assert 20 < grey16.mean() < 235, "16-bit values are scaled, not clipped"


def test_read_image_names_broken_files(tmp_path):
    for name, path in write_bad_images(str(tmp_path)).items():
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        assert path in str(info.value) and "\n" not in str(info.value), name


def _image_folder(root, bad=True):
    write_graded_dataset(str(root))
    return write_bad_images(str(root / "sparrow")) if bad else {}


def test_folder_lists_every_bad_file_before_training(tmp_path):
    bad = _image_folder(tmp_path)
    with pytest.raises(BadImagesError) as info:
        load_source(str(tmp_path), progress=False)
    message = str(info.value)
    for path in bad.values():
        assert path in message
    assert "--skip-bad-images" in message
    assert len(info.value.bad) == len(bad)


def test_folder_skips_bad_files_when_asked(tmp_path):
    bad = _image_folder(tmp_path)
    source = load_source(str(tmp_path), skip_bad_images=True, progress=False)
    assert source.class_names == ["cardinal", "sparrow", "wren"]
    assert {p for p, _ in source.skipped} == set(bad.values())
    total = sum(source.sizes.values())
    assert total == 3 * (12 + 9)
    seen = 0
    for split in ("train", "val", "test"):
        for x, y in prepare(source.examples(split), 32, 8, training=(split == "train")):
            assert np.isfinite(x.numpy()).all()
            seen += x.shape[0]
    assert seen == total


def test_folder_split_is_deterministic_and_uses_given_splits(tmp_path):
    _image_folder(tmp_path / "flat", bad=False)
    a = load_source(str(tmp_path / "flat"), progress=False).sizes
    b = load_source(str(tmp_path / "flat"), progress=False).sizes
    assert a == b and a["train"] > a["val"]
    from PIL import Image

    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        for cls in ("a", "b"):
            (tmp_path / "split" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8)).save(tmp_path / "split" / split / cls / f"{i}.jpg")
    sizes = load_source(str(tmp_path / "split"), progress=False).sizes
    assert sizes == {"train": 10, "val": 4, "test": 6}



@pytest.mark.backend_independent
def test_val_split_carved_from_train_does_not_depend_on_how_the_path_is_written(
        tmp_path, monkeypatch):
    # train/ and test/ but no val/: the val split comes out of train/, and
    # `./imgs`, `imgs` and `/abs/imgs` must give the same one.
    from PIL import Image

    for split, n in (("train", 40), ("test", 2)):
        for cls in ("a", "b"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / split / cls / f"{i}.png")

    def val_names(root):
        source = load_source(root, progress=False)
        names = sorted(os.path.relpath(os.path.abspath(p), str(tmp_path / "imgs"))
                       for p, _ in source.files["val"])
        return names, source.sizes

    monkeypatch.chdir(tmp_path)
    absolute, sizes = val_names(str(tmp_path / "imgs"))
    assert 0 < sizes["val"] < 20 and sizes["train"] + sizes["val"] == 80
    assert val_names("imgs")[0] == absolute
    assert val_names("./imgs")[0] == absolute
    assert val_names(str(tmp_path / "imgs") + "/")[0] == absolute


# === TFDS ===


@pytest.mark.parametrize("name, classes", [("stanford_dogs", 120), ("caltech_birds2010", 200)])
def test_tfds_datasets_through_the_pipeline_with_mock_data(name, classes, tmp_path, monkeypatch):
    # TFDS's mock data is geometrically inconsistent (mask size differs from
    # the image, boxes with min > max): the pipeline must cope.
    monkeypatch.setattr(tfds_datasets, "_reachable", lambda host, timeout=3.0: True)
    with tfds.testing.mock_data(num_examples=6):
        source = load_source(name, data_dir=str(tmp_path))
        assert source.num_classes == classes
        for split in ("train", "val", "test"):
            batch = next(iter(prepare(source.examples(split), 32, 4, split == "train", keep_masks=True)))
            assert batch["images"].shape == (4, 32, 32, 3)
            assert batch["object_mask"].shape == (4, 32, 32)
            mask = batch["object_mask"].numpy()
            assert np.isfinite(mask).all() and mask.min() >= 0 and mask.max() <= 1


def test_tfds_offline_fails_fast_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_datasets, "_reachable", lambda host, timeout=3.0: False)
    start = time.time()
    with pytest.raises(DatasetUnavailableError) as info:
        load_source("stanford_dogs", data_dir=str(tmp_path))
    assert time.time() - start < 10
    message = str(info.value)
    assert "\n" not in message
    assert "tfds build stanford_dogs" in message and "--data-dir" in message


# === Configs ===


def test_config_order_defaults_file_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\nbatch_size: 8\noptimizer: {learning_rate: 0.2}\n")
    config = amb_config.resolve(str(path), {"epochs": 2, "seed": None})
    assert config.schedule.epochs == 2  # command line beats file
    assert config.data.batch_size == 8  # file beats defaults
    assert config.schedule.optimizer["learning_rate"] == 0.2
    assert config.schedule.optimizer["momentum"] == 0.9  # defaults fill the rest
    assert config.runtime.seed == 0  # options not given do not override
    assert config.config_file == str(path)


def test_config_sections_and_dotted_overrides(tmp_path):
    from keras_amb.app.run_config import RunConfig

    path = tmp_path / "c.yaml"
    path.write_text("pc_weight: 0.5\nsynthetic: {version: '2', train_size: 100}\n")
    config = amb_config.resolve(
        str(path),
        {"optimizer.learning_rate": 0.01, "model.amb_weight": 0.1, "crop_scale": (0.5, 1.0)},
        ["optimizer.momentum=0.8", "schedule.epochs=3", "data.synthetic.val_size=40",
         "amb_weight=1e-2", "weights=null", "pc=false"],
    )
    assert config.schedule.optimizer == {"name": "sgd", "learning_rate": 0.01,
                                         "momentum": 0.8, "weight_decay": 1e-4}
    assert config.schedule.epochs == 3
    # A nested mapping is merged key by key: the file's keys stay.
    assert config.data.synthetic == {"version": "2", "train_size": 100, "val_size": 40}
    assert config.model.amb_weight == 0.01  # --set comes last; 1e-2 is a number
    assert config.model.pc is False and config.model.pc_weight == 0.5
    assert config.data.crop_scale == [0.5, 1.0]  # a tuple becomes YAML's list
    flat = config.to_dict()
    assert list(flat) == list(amb_config.DEFAULTS) and "config_file" not in flat
    assert RunConfig.from_dict(flat) == dataclasses.replace(config, config_file=None)
    # replace routes flat keys to their sections and leaves the original alone.
    variant = config.replace(seed=3, architecture="abn", image_size=96)
    assert (variant.runtime.seed, variant.model.architecture, variant.data.image_size) \
        == (3, "abn", 96)
    assert (config.runtime.seed, config.model.architecture) == (0, "mining")
    with pytest.raises(ValueError, match="'epochz'"):
        config.replace(epochz=3)


@pytest.mark.parametrize("assignment, needle", [
    ("model.epochs=3", "'epochs' is in the schedule section, not model"),
    ("epochz=3", "unknown option 'epochz'"),
    ("optimizer.momentum=2", "--set optimizer.momentum must be a number in [0, 1), got 2"),
    ("pc_weight", "expected KEY=VALUE"),
    ("seed=[1", "--set seed: not valid YAML"),
])
def test_bad_assignments_name_the_option(assignment, needle):
    with pytest.raises(amb_config.ConfigError) as info:
        amb_config.resolve(None, {}, [assignment])
    assert needle in str(info.value)


def test_a_mapping_config_is_checked_like_a_file():
    config = amb_config.as_run_config({"epochs": 2, "pc": False})
    assert (config.schedule.epochs, config.model.pc, config.data.dataset) \
        == (2, False, "synthetic")
    assert amb_config.as_run_config(config) is config
    with pytest.raises(amb_config.ConfigError, match="epochs must be a positive integer"):
        amb_config.as_run_config({"epochs": 0})


def test_bundled_configs_carry_the_paper_settings():
    dogs = amb_config.resolve(None, {"dataset": "stanford_dogs"})
    birds = amb_config.resolve(None, {"dataset": "caltech_birds2010"})
    # The default for a TFDS dataset is the ImageNet-initialised config, and
    # its name says so.
    assert dogs.config_file.endswith("stanford_dogs_imagenet.yaml")
    for name in ("stanford_dogs_paper", "caltech_birds2010_paper"):
        paper = amb_config.resolve(name)
        assert paper.model.weights is None and paper.model.backbone == "resnet50_official"
        assert paper.data.batch_size == 16
        assert paper.schedule.pretrain_epochs == paper.schedule.epochs == 300
    for config in (dogs, birds):
        assert config.model.backbone == "resnet50" and config.model.weights == "imagenet"
        assert config.data.image_size == 224 and config.data.batch_size == 16
        assert config.model.amb_weight == 1e-4
    assert dogs.model.mask_threshold == 0.40 and birds.model.mask_threshold == 0.78
    assert amb_config.resolve("stanford_dogs_paper").model.mask_threshold == 0.40
    v2 = amb_config.resolve("synthetic_v2.yaml")
    assert v2.data.synthetic["version"] == "2"


def test_renamed_options_say_their_new_name(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("model: abn\n")
    with pytest.raises(amb_config.ConfigError, match="'model' is now called 'architecture'"):
        amb_config.resolve(str(path))
    with pytest.raises(amb_config.ConfigError, match="bundled configs"):
        amb_config.resolve("no_such_config")


@pytest.mark.parametrize("text, needle", [
    ("epochs: [1, 2\n", "not valid YAML"),
    ("epochz: 3\n", "'epochz'"),
    ("epochs: -3\n", "epochs must be a positive integer"),
    ("mask_threshold: 2\n", "mask_threshold must be a number in [0, 1]"),
    ("flip: maybe\n", "flip must be true or false"),
    ("- 1\n- 2\n", "must be a mapping"),
    ("!!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
])
def test_bad_config_files_are_named(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(amb_config.ConfigError) as info:
        amb_config.resolve(str(path))
    assert needle in str(info.value)
    assert str(path) in str(info.value)
