"""`keras-amb review`'s server, through Flask's test client: every route,
the bad requests, path traversal, the token and concurrent saves."""

import io
import json
import os
import socket
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="keras-amb[review] (Flask) is not installed")

from keras_amb.app.review import finetune as review_finetune  # noqa: E402
from keras_amb.app.review import images as review_images  # noqa: E402
from keras_amb.app.review import session as review_session  # noqa: E402
from keras_amb.app.review.byte_cache import ByteCache  # noqa: E402
from keras_amb.app.review.server import create_app  # noqa: E402
from keras_amb.app.review.session import Review  # noqa: E402
from keras_amb.app.review.images import image_set  # noqa: E402
from keras_amb.app.runs import Run  # noqa: E402

# The backend-independent tests run under torch, the shortest suite (the
# TensorFlow suite sets the time of the three run at once).
WIDTH, HEIGHT = 24, 20


def _png(array, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def _all_files(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny untrained ABN saved once, and a folder dataset whose two
    classes reuse file names (cardinal/0000.png, jay/0000.png, ...)."""
    from keras_amb.models import AttentionBranchNetwork

    root = tmp_path_factory.mktemp("review")
    data = root / "birds"
    rng = np.random.default_rng(0)
    for cls in ("cardinal", "jay"):
        os.makedirs(data / cls)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)).save(
                data / cls / f"{i:04d}.png")
    model = AttentionBranchNetwork(num_classes=2, backbone="resnet_tiny", image_size=32,
                                   class_names=["cardinal", "jay"])
    model(np.zeros((1, 32, 32, 3), np.float32))
    path = str(root / "tiny.keras")
    model.save(path)
    return {"root": root, "data": str(data), "model_path": path, "model": model}


@pytest.fixture
def review(setup, tmp_path):
    images = image_set(Run.open(setup["model_path"]), setup["data"], split="train")
    return Review(setup["model_path"], images, str(tmp_path / "review"), model=setup["model"],
                  batch_size=8)


@pytest.fixture
def client(review):
    return create_app(review).test_client()


def _keys(review, cls):
    """The keys of class `cls` in the reviewed split."""
    return [k for k in review.images.keys if k.startswith(cls + "/")]


def _first_key(client):
    return client.get("/api/gallery?per_page=1").get_json()["items"][0]["key"]


@pytest.mark.backend_independent("torch")
def test_page_and_info(client, review):
    page = client.get("/")
    assert page.status_code == 200 and b"<canvas" in page.data
    script = client.get("/static/app.js")
    assert script.status_code == 200 and b"If-Match" in script.data
    info = client.get("/api/info").get_json()
    assert info["classes"] == ["cardinal", "jay"] and info["labelled"] is True
    assert info["summary"]["total"] == len(review.images) > 0
    command = info["finetune_command"]
    assert command.startswith("keras-amb train --dataset ")
    assert f"--init-from {review.run}" in command
    assert f"--attention-targets {review.maps_dir}" in command and "--architecture abn" in command
    # A bare model file has no config.yaml: the command names its architecture.
    assert "--backbone resnet_tiny --image-size 32 --weights none" in command


@pytest.mark.backend_independent("torch")
def test_gallery_orders_filters_and_pages(client, review):
    body = client.get("/api/gallery?per_page=200").get_json()
    items = body["items"]
    assert len(items) == body["matching"] == len(review.images)
    assert body["summary"]["scored"] == len(review.images)
    wrong = [it for it in items if it["misclassified"]]
    right = [it for it in items if not it["misclassified"]]
    # Misclassified first, the most confident first; then the least confident first.
    assert items[: len(wrong)] == wrong
    assert [w["probability"] for w in wrong] == sorted((w["probability"] for w in wrong),
                                                       reverse=True)
    assert [r["probability"] for r in right] == sorted(r["probability"] for r in right)
    for it in items:
        assert it["misclassified"] == (it["predicted_class"] != it["true_class"])
        assert it["true_class"] == it["key"].split("/")[0]
    assert body["summary"]["misclassified"] == len(wrong)
    only = client.get("/api/gallery?filter=misclassified&per_page=200").get_json()
    assert [it["key"] for it in only["items"]] == [it["key"] for it in wrong]
    jay = client.get("/api/gallery?class=jay&per_page=200").get_json()["items"]
    assert jay and all("jay" in (it["true_class"], it["predicted_class"]) for it in jay)
    first = client.get("/api/gallery?page=0&per_page=3").get_json()["items"]
    second = client.get("/api/gallery?page=1&per_page=3").get_json()["items"]
    assert [it["key"] for it in first + second] == [it["key"] for it in items[:6]]
    for query in ("page=-1", "per_page=0", "per_page=1000", "page=abc", "filter=nonsense",
                  "class=penguin"):
        response = client.get(f"/api/gallery?{query}")
        assert response.status_code == 400 and response.get_json()["error"], query


@pytest.mark.backend_independent("torch")
def test_order_uses_attention_energy_in_the_object_where_masks_exist(setup, tmp_path,
                                                                    monkeypatch):
    from keras_amb.data import sources
    from keras_amb.data import synthetic

    params = {"num_classes": 2, "image_size": 32, "train_size": 4, "val_size": 12,
              "test_size": 4}
    images = review_images.from_source(sources.synthetic_source(**params), "val", "synthetic",
                                       params)
    assert images.keys[:2] == ["val/000000", "val/000001"]
    review = Review(setup["model_path"], images, str(tmp_path / "r"), model=setup["model"])
    review.score(range(len(images)))
    config = synthetic.make_config(params)
    mask = synthetic.make_example(config, "val", 3)["object_mask"] > 0
    grey = review.model_map(3).astype(np.float32)
    assert review.energy[3] == pytest.approx((grey * mask).sum() / grey.sum(), rel=1e-5)
    assert 0 < review.energy[3] < 1
    items = [review.item(i) for i in review.order()]
    tiers = [0 if it["misclassified"] else 1 if it["probability"] < review_session.LOW_CONFIDENCE
             else 2 for it in items]
    assert tiers == sorted(tiers)
    # With every correct image counted as confident, they follow the energy.
    monkeypatch.setattr(review_session, "LOW_CONFIDENCE", 0.0)
    items = [review.item(i) for i in review.order()]
    confident = [it["energy_in_object"] for it in items if not it["misclassified"]]
    assert len(confident) >= 2 and confident == sorted(confident)
    assert len(set(confident)) > 1
    assert all(it["energy_in_object"] is not None for it in items)


@pytest.mark.backend_independent("torch")
def test_pages_are_scored_on_demand_in_batches(review):
    assert not review.scored.any()
    body = review.page(0, per_page=5)
    # Ordering needs scores: unscored images come last, in dataset order,
    # and a page's own images are scored when it is asked for.
    assert len(body["items"]) == 5 and review.scored.sum() == 5
    review.start_scoring()
    review.wait_scored(120)
    assert review.scored.all()


def test_image_routes(client, review):
    key = _first_key(client)
    item = client.get(f"/api/image/{key}").get_json()
    assert (item["width"], item["height"]) == (WIDTH, HEIGHT) and item["version"] == "none"
    picture = Image.open(io.BytesIO(client.get(f"/api/image/{key}/picture.png").data))
    assert picture.size == (WIDTH, HEIGHT)
    original = np.asarray(Image.open(os.path.join(review.images.name.split(" (")[0], key)))
    assert np.array_equal(np.asarray(picture.convert("RGB")), original)
    thumb = client.get(f"/api/image/{key}/thumbnail.png")
    assert thumb.status_code == 200 and thumb.mimetype == "image/png"
    for kind in ("model", "cam", "gradcam"):
        response = client.get(f"/api/image/{key}/map.png?kind={kind}")
        assert response.status_code == 200, kind
        grey = np.asarray(Image.open(io.BytesIO(response.data)))
        assert grey.shape == (HEIGHT, WIDTH) and grey.dtype == np.uint8, kind
    model_map = np.asarray(Image.open(io.BytesIO(
        client.get(f"/api/image/{key}/map.png?kind=model").data)))
    assert np.array_equal(model_map, review.model_map(review.lookup(key)))
    assert client.get(f"/api/image/{key}/map.png?kind=corrected").status_code == 404
    assert client.get(f"/api/image/{key}/map.png?kind=after").status_code == 404
    assert client.get(f"/api/image/{key}/map.png?kind=secret").status_code == 400
    assert client.get("/api/before_after").status_code == 404
    assert client.get("/api/nothing").status_code == 404
    assert client.post("/api/info").status_code == 405


@pytest.mark.backend_independent("torch")
def test_save_writes_the_keyed_map_and_refuses_stale_versions(client, review):
    key = _keys(review, "jay")[0]
    twin = "cardinal/" + key.split("/")[1]
    correction = np.zeros((HEIGHT, WIDTH), np.uint8)
    correction[5:12, 3:9] = 255
    response = client.put(f"/api/image/{key}/map", data=_png(correction),
                          headers={"If-Match": "none"})
    assert response.status_code == 200, response.get_json()
    version = response.get_json()["version"]
    path = os.path.join(review.maps_dir, *key.split("/"))
    assert np.array_equal(np.asarray(Image.open(path)), correction)
    # cardinal's image of the same file name has no map.
    assert not os.path.exists(os.path.join(review.maps_dir, *twin.split("/")))
    index = json.load(open(os.path.join(review.maps_dir, "index.json")))["maps"]
    assert index[key]["source"] == "edited" and index[key]["map"] == key
    assert client.get(f"/api/image/{key}").get_json()["version"] == version
    served = client.get(f"/api/image/{key}/map.png?kind=corrected")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(served.data))), correction)
    # A tab that loaded the image before this save is refused; the file stays.
    stale = client.put(f"/api/image/{key}/map", data=_png(255 - correction),
                       headers={"If-Match": "none"})
    assert stale.status_code == 409 and "since this page loaded it" in stale.get_json()["error"]
    assert np.array_equal(np.asarray(Image.open(path)), correction)
    again = client.put(f"/api/image/{key}/map", data=_png(255 - correction),
                       headers={"If-Match": version})
    assert again.status_code == 200
    assert np.array_equal(np.asarray(Image.open(path)), 255 - correction)
    # An RGBA PNG with equal channels (what a browser canvas gives) is accepted.
    rgba = np.dstack([correction] * 3 + [np.full_like(correction, 255)])
    ok = client.put(f"/api/image/{key}/map", data=_png(rgba),
                    headers={"If-Match": again.get_json()["version"]})
    assert ok.status_code == 200
    summary = ok.get_json()["summary"]
    assert summary["corrected"] == 1
    assert sorted(f for f in _all_files(review.output_dir)) == sorted(
        [path, os.path.join(review.maps_dir, "index.json")])


@pytest.mark.backend_independent("torch")
def test_bad_uploads_write_nothing(client, review, setup):
    key = _keys(review, "cardinal")[0]
    good = np.zeros((HEIGHT, WIDTH), np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(good).save(jpeg, format="JPEG")
    colour = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    colour[..., 0] = 200
    cases = {
        "not a png": (jpeg.getvalue(), 400, "PNG"),
        "text": (b"hello", 400, "PNG"),
        "truncated png": (_png(good)[:40], 400, "readable"),
        "wrong size": (_png(np.zeros((HEIGHT, WIDTH + 1), np.uint8)), 400, "the image is"),
        "16-bit": (_png(np.zeros((HEIGHT, WIDTH), np.uint16)), 400, "8-bit grey"),
        "colour": (_png(colour), 400, "grey"),
        "no if-match": (_png(good), 400, "If-Match"),
    }
    for name, (data, status, needle) in cases.items():
        headers = {} if name == "no if-match" else {"If-Match": "none"}
        response = client.put(f"/api/image/{key}/map", data=data, headers=headers)
        assert response.status_code == status, name
        assert needle in response.get_json()["error"], (name, response.get_json())
    unknown = client.put("/api/image/cardinal/9999.png/map", data=_png(good),
                         headers={"If-Match": "none"})
    assert unknown.status_code == 404
    app = create_app(review)
    app.config["MAX_CONTENT_LENGTH"] = 1000
    big = app.test_client().put(f"/api/image/{key}/map", data=b"\x89PNG" + b"0" * 5000,
                                headers={"If-Match": "none"})
    assert big.status_code == 413 and "limit" in big.get_json()["error"]
    assert len(b"0" * (review_images.MAX_UPLOAD_BYTES + 1)) > review_images.MAX_UPLOAD_BYTES
    with pytest.raises(review_session.ReviewError, match="over the limit"):
        review.check_map_upload(0, b"\x89PNG\r\n\x1a\n" + bytes(review_images.MAX_UPLOAD_BYTES))
    assert _all_files(review.output_dir) == []


@pytest.mark.backend_independent("torch")
def test_keys_are_never_paths(client, review, setup, tmp_path):
    before = _all_files(setup["root"])
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(secret)
    attempts = ["../../secret.png", "..%2F..%2Fsecret.png", "%2e%2e/%2e%2e/secret.png",
                str(secret).lstrip("/"), "/" + str(secret), "cardinal/../jay/0001.png",
                "cardinal/./0001.png", "cardinal%5C0001.png"]
    for attempt in attempts:
        for route in ("", "/picture.png", "/map.png", "/thumbnail.png"):
            response = client.get(f"/api/image/{attempt}{route}")
            assert response.status_code == 404, (attempt, route)
        response = client.put(f"/api/image/{attempt}/map", headers={"If-Match": "none"},
                              data=_png(np.zeros((HEIGHT, WIDTH), np.uint8)))
        assert response.status_code == 404, attempt
    assert _all_files(setup["root"]) == before
    assert _all_files(review.output_dir) == []


@pytest.mark.backend_independent("torch")
def test_token_guards_every_route(review):
    client = create_app(review, token="s3cret-token").test_client()
    for route in ("/", "/static/app.js", "/api/info", "/api/gallery",
                  f"/api/image/{review.images.keys[0]}/picture.png"):
        response = client.get(route)
        assert response.status_code == 401, route
        assert "token" in response.get_json()["error"]
    assert client.get("/api/info?token=wrong").status_code == 401
    assert client.put(f"/api/image/{review.images.keys[0]}/map", headers={"If-Match": "none"},
                      data=_png(np.zeros((HEIGHT, WIDTH), np.uint8))).status_code == 401
    assert _all_files(review.output_dir) == []
    assert client.get("/api/info?token=s3cret-token").status_code == 200
    assert client.get("/api/info", headers={"X-Review-Token": "s3cret-token"}).status_code == 200
    # Opening the page with the token gives a cookie, which the page's images
    # carry, and a redirect to the page without the token in its URL.
    fresh = create_app(review, token="s3cret-token").test_client()
    first = fresh.get("/?token=s3cret-token")
    assert first.status_code == 303 and "token" not in first.headers["Location"]
    assert "HttpOnly" in first.headers["Set-Cookie"]
    assert fresh.get("/").status_code == 200
    assert fresh.get(f"/api/image/{review.images.keys[0]}/picture.png").status_code == 200


@pytest.mark.backend_independent("torch")
def test_other_sites_and_hosts_are_refused(client, review):
    data = _png(np.zeros((HEIGHT, WIDTH), np.uint8))
    key = review.images.keys[0]
    response = client.put(f"/api/image/{key}/map", data=data, headers={
        "If-Match": "none", "Origin": "http://evil.example"})
    assert response.status_code == 403 and "evil.example" in response.get_json()["error"]
    response = client.post("/api/finetune", data='{"epochs": 1}', content_type="text/plain")
    assert response.status_code == 415
    assert client.post("/api/finetune", json=[1]).status_code == 400
    # DNS rebinding: a page at evil.example whose name now points here.
    response = client.get("/api/info", base_url="http://evil.example:8765")
    assert response.status_code == 403
    assert client.get("/api/info", base_url="http://127.0.0.1:8765").status_code == 200
    same_site = client.put(f"/api/image/{key}/map", data=data, headers={
        "If-Match": "none", "Origin": "http://localhost"})
    assert same_site.status_code == 200
    assert _all_files(review.output_dir) == sorted(
        [review.store.path(key), os.path.join(review.maps_dir, "index.json")])


@pytest.mark.backend_independent("torch")
def test_concurrent_saves_one_wins_the_other_is_told(review):
    app = create_app(review)
    key = _keys(review, "jay")[-1]
    uploads = [np.full((HEIGHT, WIDTH), v, np.uint8) for v in (50, 200)]
    barrier = threading.Barrier(2)
    results = [None, None]

    def save(i):
        client = app.test_client()
        barrier.wait()
        results[i] = client.put(f"/api/image/{key}/map", data=_png(uploads[i]),
                                headers={"If-Match": "none"}).status_code

    threads = [threading.Thread(target=save, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]
    winner = uploads[results.index(200)]
    saved = np.asarray(Image.open(os.path.join(review.maps_dir, *key.split("/"))))
    assert np.array_equal(saved, winner)


@pytest.mark.backend_independent("torch")
def test_fine_tuning_requests(client, review, setup, tmp_path):
    assert client.get("/api/finetune").get_json()["state"] == "idle"
    no_maps = client.post("/api/finetune", json={"epochs": 1})
    assert no_maps.status_code == 400 and "corrected map" in no_maps.get_json()["error"]
    for epochs in (0, "3", True, 5000):
        response = client.post("/api/finetune", json={"epochs": epochs})
        assert response.status_code == 400, epochs
    command = client.get("/api/finetune?epochs=7").get_json()["command"]
    assert "--epochs 7" in command
    # Unlabelled images can be reviewed, not fine-tuned on.
    folder = review_images.from_folder(setup["data"])
    assert folder.keys[0] == "cardinal/0000.png" and not folder.labelled
    unlabelled = Review(setup["model_path"], folder, str(tmp_path / "r2"), model=setup["model"])
    other = create_app(unlabelled).test_client()
    assert other.get("/api/info").get_json()["finetune_command"] is None
    item = other.get("/api/gallery?per_page=1").get_json()["items"][0]
    assert item["true_class"] is None and item["misclassified"] is False
    key = item["key"]
    assert other.put(f"/api/image/{key}/map", headers={"If-Match": "none"},
                     data=_png(np.zeros((HEIGHT, WIDTH), np.uint8))).status_code == 200
    response = other.post("/api/finetune", json={"epochs": 1})
    assert response.status_code == 400 and "--dataset" in response.get_json()["error"]


@pytest.mark.backend_independent("torch")
def test_command_line(setup, monkeypatch, tmp_path):
    import importlib.util

    from click.testing import CliRunner

    from keras_amb.cli.main import cli  # noqa: I001  (registers the commands first)
    from keras_amb.cli import review as review_cli
    from keras_amb.app.review import server

    calls = {}

    def fake_serve(app, host, port, ready=None):
        calls.update(host=host, port=port)
        ready(4321)

    monkeypatch.setattr(server, "serve", fake_serve)
    runner = CliRunner()
    out = str(tmp_path / "out")
    result = runner.invoke(cli, ["review", setup["model_path"], "--dataset", setup["data"],
                                 "--host", "0.0.0.0", "--output", out])
    assert result.exit_code == 0, result.output
    assert calls == {"host": "0.0.0.0", "port": 8765}
    assert f"Reviewing tiny.keras at http://{socket.gethostname()}:4321/?token=" in result.output
    token = result.output.split("?token=")[1].split()[0]
    assert len(token) >= 24
    result = runner.invoke(cli, ["review", setup["model_path"], "--dataset", setup["data"],
                                 "--output", out])
    assert "at http://127.0.0.1:4321/ (Ctrl+C to stop)" in result.output
    result = runner.invoke(cli, ["review", setup["model_path"], "--output", out])
    assert result.exit_code == 1 and "pass --dataset or --images" in result.output
    real = importlib.util.find_spec
    monkeypatch.setattr(review_cli.importlib.util, "find_spec",
                        lambda name, *a: None if name == "flask" else real(name, *a))
    result = runner.invoke(cli, ["review", setup["model_path"]])
    assert result.exit_code == 1
    assert result.output.strip() == \
        'Error: keras-amb review needs Flask: pip install "keras-amb[review]"'


@pytest.mark.backend_independent("torch")
@pytest.mark.parametrize("version", ["2", "3"])
def test_review_draws_each_synthetic_version_with_its_own_generator(version):
    # The review drew every synthetic version with version 1's generator:
    # on version 3 its labels and images were not the dataset's.
    from keras_amb.data import sources
    from keras_amb.data import synthetic

    params = {"version": version, "num_classes": 4, "train_size": 4, "val_size": 6,
              "test_size": 4}
    images = review_images.from_source(sources.synthetic_source(**params), "val", "synthetic",
                                       params)
    split = synthetic.make_split(synthetic.make_config(params), "val")
    assert images.labels == [int(label) for label in split["label"]]
    np.testing.assert_array_equal(images.mask(2), split["object_mask"][2])


# === Reliability II (#39 §5): one fine-tune at a time, read-only runs, the
# token kept out of logs, the picture cache bounded in bytes, bad numbers ===

class _SlowChild:
    """A stand-in for the fine-tuning process: runs until `finish()`."""

    started = []

    def __init__(self, *args, **kwargs):
        self.code = None
        self.waited = threading.Event()
        _SlowChild.started.append(self)

    def poll(self):
        return self.code

    def wait(self):
        self.waited.wait(30)
        return self.code

    def finish(self, code=0):
        self.code = code
        self.waited.set()


@pytest.mark.backend_independent("torch")
def test_concurrent_fine_tunes_one_runs_the_other_gets_409(client, review, monkeypatch):
    monkeypatch.setattr(review_finetune.subprocess, "Popen", _SlowChild)
    _SlowChild.started = []
    key = _keys(review, "jay")[0]
    version = client.get(f"/api/image/{key}").get_json()["version"]
    assert client.put(f"/api/image/{key}/map", headers={"If-Match": version},
                      data=_png(np.zeros((HEIGHT, WIDTH), np.uint8))).status_code == 200
    barrier = threading.Barrier(4)
    codes = []

    def start():
        barrier.wait()
        codes.append(client.post("/api/finetune", json={"epochs": 1}).status_code)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 409, 409, 409]
    assert len(_SlowChild.started) == 1
    # The page tracks the one that runs, and a finished child is reaped.
    first = client.get("/api/finetune").get_json()
    assert first["state"] == "running"
    _SlowChild.started[0].finish(0)
    assert client.get("/api/finetune").get_json()["state"] == "finished"
    # The next one, even within the same second, gets a folder of its own.
    second = client.post("/api/finetune", json={"epochs": 1})
    assert second.status_code == 200 and len(_SlowChild.started) == 2
    assert second.get_json()["output"] != first["output"]
    _SlowChild.started[1].finish(0)


@pytest.mark.backend_independent("torch")
def test_a_run_that_cannot_be_written_says_saving_is_off(setup, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder would be")
    images = image_set(Run.open(setup["model_path"]), setup["data"], split="train")
    review = Review(setup["model_path"], images, str(blocker / "review"), model=setup["model"],
                    batch_size=8)
    client = create_app(review).test_client()
    info = client.get("/api/info").get_json()
    assert info["read_only"] and str(blocker) in info["read_only"]
    key = _keys(review, "jay")[0]
    response = client.put(f"/api/image/{key}/map", headers={"If-Match": "none"},
                          data=_png(np.zeros((HEIGHT, WIDTH), np.uint8)))
    assert response.status_code == 403 and response.is_json
    assert "saving is off" in response.get_json()["error"]
    assert client.post("/api/finetune", json={"epochs": 1}).status_code == 403
    assert blocker.read_text() == "a file where the output folder would be"


@pytest.mark.backend_independent("torch")
def test_the_token_never_reaches_the_log_or_later_urls(review, caplog):
    import logging

    from keras_amb.app.review import server

    assert server.redact('"GET /?token=s3cret&x=1 HTTP/1.1" 303') == (
        '"GET /?token=***&x=1 HTTP/1.1" 303')
    app = create_app(review, token="s3cret-token")
    port = []
    thread = threading.Thread(target=server.serve, args=(app, "127.0.0.1", 0, port.append),
                              daemon=True)
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        thread.start()
        for _ in range(100):
            if port:
                break
            threading.Event().wait(0.05)
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        page = opener.open(f"http://127.0.0.1:{port[0]}/?token=s3cret-token", timeout=10)
        assert page.status == 200 and page.url.endswith("/") and "token" not in page.url
        info = opener.open(f"http://127.0.0.1:{port[0]}/api/info", timeout=10)
        assert info.status == 200  # the cookie, not the URL, carries it
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET /?token=***" in logged and "s3cret-token" not in logged
    with open(os.path.join(server.STATIC, "app.js"), encoding="utf-8") as f:
        script = f.read()
    assert "token" not in script.split("// === Requests ===")[1].split("function show")[0]


@pytest.mark.backend_independent("torch")
def test_the_picture_cache_is_bounded_in_bytes(review):
    assert review.cache.max_bytes == review_session.CACHE_BYTES
    cache = ByteCache(10 * 2**20)
    for i in range(40):  # 40 values of 1 MiB: at most 10 MiB kept
        cache.get(("test", i), lambda: np.zeros(2**20, np.uint8))
    assert cache.bytes == 10 * 2**20 and len(cache) == 10
    assert cache.get(("test", 39), lambda: None) is not None  # the newest stay
    assert cache.get(("test", 0), lambda: "made again") == "made again"
    huge = cache.get(("huge",), lambda: np.zeros(5 * 2**20, np.uint8))
    assert huge.nbytes == 5 * 2**20
    assert cache.get(("huge",), lambda: "not kept") == "not kept"  # over a quarter


@pytest.mark.backend_independent("torch")
@pytest.mark.parametrize("query", ["offset=1e23", "offset=-1", "offset=99999999999999999999",
                                   "offset=%EF%BC%91", "epochs=1.5"])
def test_bad_numbers_in_queries_are_a_400(client, query):
    response = client.get(f"/api/finetune?{query}")
    assert response.status_code == 400 and response.is_json
    assert query.split("=")[0] in response.get_json()["error"]
