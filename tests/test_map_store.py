"""Attention maps keyed by image (`keras_amb.data.map_store`): nothing collides."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from keras_amb.data import map_store
from keras_amb.data import sources
from keras_amb.data import tfds_datasets
from keras_amb.data.map_store import MapKeyError
from keras_amb.data.map_store import MapStore
from keras_amb.data.pipeline import prepare
from keras_amb.data.sources import load_source

# Under torch, the shortest suite (the TensorFlow suite sets the time of the three).
pytestmark = pytest.mark.backend_independent("torch")


def _grey(value, size=8):
    return np.full((size, size), value, np.uint8)


def _twin_dataset(root):
    """Two classes whose files share names: cardinal/0001.jpg, jay/0001.jpg..."""
    for cls, colour in (("cardinal", 200), ("jay", 40)):
        os.makedirs(root / cls)
        for i in range(4):
            Image.new("RGB", (8, 8), (colour, i, 0)).save(root / cls / f"{i:04d}.jpg")


def test_keys_and_map_names():
    assert map_store.folder_key("photos/jay/0001.jpg", "photos") == "jay/0001.jpg"
    assert map_store.example_key("train", 12) == "train/000012"
    assert map_store.map_name("jay/0001.jpg") == "jay/0001.png"
    assert map_store.map_name("train/000012") == "train/000012.png"
    with pytest.raises(ValueError):
        map_store.folder_key("/etc/passwd", "photos")
    for bad in ("../x.png", "/abs.png", "a/../../b", "a\\b", "", "a//b", ".hidden/x", "x/.."):
        with pytest.raises(ValueError):
            map_store.check_key(bad)
    with pytest.raises(ValueError):
        map_store.example_key("train", -1)


def test_store_writes_maps_by_key_and_an_index(tmp_path):
    store = MapStore(tmp_path / "maps")
    path = store.write("jay/0001.jpg", _grey(7), source="edited", model="RUN",
                       raw=np.ones((2, 2)))
    assert path == str(tmp_path / "maps" / "jay" / "0001.png")
    assert np.asarray(Image.open(path)).tolist() == _grey(7).tolist()
    assert np.load(tmp_path / "maps" / "jay" / "0001.npy").shape == (2, 2)
    index = json.load(open(tmp_path / "maps" / "index.json"))
    entry = index["maps"]["jay/0001.jpg"]
    assert entry["map"] == "jay/0001.png" and entry["map_raw"] == "jay/0001.npy"
    assert entry["source"] == "edited" and entry["model"] == "RUN" and entry["time"]
    # No temporary files are left behind, and a second store reads the index.
    assert sorted(os.listdir(tmp_path / "maps")) == ["index.json", "jay"]
    assert "jay/0001.jpg" in MapStore(tmp_path / "maps").index()
    with pytest.raises(ValueError):
        store.write("../escape.jpg", _grey(1), source="edited")
    with pytest.raises(ValueError):
        store.write("a.jpg", np.zeros((4, 4), np.float32), source="edited")


def test_input_keys_keep_folders_and_refuse_clashes(tmp_path):
    _twin_dataset(tmp_path / "d")
    pairs = map_store.input_keys([str(tmp_path / "d")])
    assert [key for _, key in pairs][:2] == ["cardinal/0000.jpg", "cardinal/0001.jpg"]
    assert len({key for _, key in pairs}) == 8
    with pytest.raises(MapKeyError, match="0001.jpg"):
        map_store.input_keys([str(tmp_path / "d" / "cardinal" / "0001.jpg"),
                              str(tmp_path / "d" / "jay" / "0001.jpg")])
    Image.new("RGB", (8, 8)).save(tmp_path / "d" / "jay" / "0001.png")
    with pytest.raises(MapKeyError, match="jay/0001.png"):
        map_store.input_keys([str(tmp_path / "d")])


def test_find_targets_keyed_flat_and_ambiguous(tmp_path):
    keys = ["cardinal/0001.jpg", "jay/0001.jpg", "jay/0002.jpg"]
    maps = tmp_path / "maps"
    store = MapStore(maps)
    store.write("cardinal/0001.jpg", _grey(1), source="edited")
    store.write("jay/0001.jpg", _grey(2), source="edited")
    found = map_store.find_targets(str(maps), keys)
    assert found == {"cardinal/0001.jpg": str(maps / "cardinal" / "0001.png"),
                     "jay/0001.jpg": str(maps / "jay" / "0001.png")}
    # An old flat map whose stem is unique is still read.
    Image.fromarray(_grey(3)).save(maps / "0002.png")
    assert map_store.find_targets(str(maps), keys)["jay/0002.jpg"] == str(maps / "0002.png")
    # One whose stem two images share is refused, naming the file and both images.
    Image.fromarray(_grey(4)).save(maps / "0001.png")
    with pytest.raises(MapKeyError) as info:
        map_store.find_targets(str(maps), keys)
    message = str(info.value)
    assert str(maps / "0001.png") in message
    assert "cardinal/0001.jpg" in message and "jay/0001.jpg" in message


def _targets_by_label(source, split):
    batch = next(iter(prepare(source.examples(split), 8, 64, training=False,
                              resize_ratio=1.0, keep_masks=True)))
    return batch


def test_folder_dataset_gives_each_twin_its_own_map(tmp_path):
    root = tmp_path / "d"
    _twin_dataset(root)
    source = load_source(str(root), progress=False)
    maps = tmp_path / "maps"
    store = MapStore(maps)
    for split in source.sizes:
        for key in source.keys(split):
            # cardinal's maps are white, jay's black: a mix-up shows.
            store.write(key, _grey(255 if key.startswith("cardinal") else 0), source="edited")
    source = load_source(str(root), progress=False, attention_targets_dir=str(maps))
    for split in source.sizes:
        if not source.sizes[split]:
            continue
        batch = _targets_by_label(source, split)
        targets = batch["attention_target"].numpy().mean(axis=(1, 2))
        labels = batch["labels"].numpy()
        assert batch["has_attention_target"].numpy().tolist() == [1.0] * len(labels)
        np.testing.assert_allclose(targets, np.where(labels == 0, 1.0, 0.0), atol=1e-6)
    # The same maps flat, as earlier releases saved them: refused, naming the files.
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(_grey(255)).save(flat / "0001.png")
    with pytest.raises(MapKeyError, match="0001.png"):
        load_source(str(root), progress=False, attention_targets_dir=str(flat))


def test_synthetic_dataset_reads_maps_by_split_and_id(tmp_path):
    params = {"num_classes": 4, "image_size": 32, "train_size": 6, "val_size": 2,
              "test_size": 2}
    maps = tmp_path / "maps"
    MapStore(maps).write(map_store.example_key("train", 4), _grey(255, 32), source="edited")
    source = sources.synthetic_source(attention_targets_dir=str(maps), **params)
    assert source.keys("val") == ["val/000000", "val/000001"]
    example = list(source.examples("train").as_numpy_iterator())
    assert [e["has_attention_target"] for e in example] == [0, 0, 0, 0, 1, 0]
    assert example[4]["attention_target"].min() == 1.0
    assert example[3]["attention_target"].max() == 0.0
    # Images are unchanged by the targets.
    plain = list(sources.synthetic_source(**params).examples("train").as_numpy_iterator())
    assert np.array_equal(plain[4]["image"], example[4]["image"])


def test_tfds_dataset_reads_maps_by_split_and_position(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_datasets, "_reachable", lambda host, timeout=3.0: True)
    maps = tmp_path / "maps"
    MapStore(maps).write("test/000001", _grey(255, 4), source="edited")
    with tfds.testing.mock_data(num_examples=4):
        source = load_source("stanford_dogs", data_dir=str(tmp_path / "tfds"),
                             attention_targets_dir=str(maps))
        # Mock data has no split sizes; a prepared dataset has them.
        source.sizes = {"train": 4, "val": 4, "test": 4}
        examples = list(source.examples("test").take(3).as_numpy_iterator())
    assert [e["has_attention_target"] for e in examples] == [0.0, 1.0, 0.0]
    target = examples[1]["attention_target"]
    assert target.shape == examples[1]["image"].shape[:2] and target.min() == 1.0
