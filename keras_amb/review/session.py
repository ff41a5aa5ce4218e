"""A review: one model's attention maps over keyed images, corrected by a person.

`Review` holds what the review page shows and changes, independent of the
web framework (`keras_amb.review.server` only routes requests to it):

- predictions and attention maps, computed in batches (a background thread
  scores every image, a page's images are scored first when asked for) and
  kept small (a map is `h x w` floats), so 10,000 images cost little;
- the order to review them in: misclassified first (most confident
  first), then the correctly classified ones of low confidence (under
  `LOW_CONFIDENCE`, the least confident first), then the rest: where the
  dataset has object masks or boxes, the least attention energy inside the
  object first, else the least confident first;
- corrected maps saved in `<output>/maps` (`data.map_store`), atomically,
  refusing to overwrite a map saved since the page loaded it;
- the fine-tuning command on the corrections, optionally run, and the maps
  before and after.

Why this module is long (about 550 lines): a `Review` is the state of one
review session behind the page's routes (`server.py` holds only the Flask
routes), and its parts share that state: scoring in a background thread,
the order, the caches of maps and thumbnails, saving with conflict checks,
and the fine-tuning process and its before/after maps.
"""

import collections
import hashlib
import io
import os
import shlex
import subprocess
import sys
import threading

import numpy as np

from keras_amb.data.map_store import MapStore
from keras_amb.review.images import png_bytes
from keras_amb.runs import timestamp
from keras_amb.errors import ReviewError  # noqa: F401 (re-exported)

# A corrected map upload is a grey PNG; larger ones are refused unread.
MAX_UPLOAD_BYTES = 16 * 2**20
# Pictures, thumbnails and maps kept for the page, bounded in bytes (a 16 Mpx
# photo's PNG is tens of MB); the least recently used go first.
CACHE_BYTES = 128 * 2**20
THUMBNAIL = 160
LOW_CONFIDENCE = 0.5


class UnknownImageError(ReviewError):
    status = 404


class MapConflictError(ReviewError):
    status = 409


class ReadOnlyError(ReviewError):
    status = 403


def _size(value):
    """Bytes a cached value holds (PNG bytes, arrays)."""
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    try:
        return len(value)
    except TypeError:
        return 64


def _free_name(base):
    """`base`, or `base-2`, `base-3`, ...: the first with no folder or log."""
    name, n = base, 1
    while os.path.exists(name) or os.path.exists(name + ".log"):
        n += 1
        name = f"{base}-{n}"
    return name


def _not_writable(folder):
    """None if corrections can be saved under `folder` (made if needed,
    `safety.check_output_folder`), else why not, in words."""
    from keras_amb import safety

    try:
        safety.check_output_folder(folder, "--output")
    except safety.OutputError as error:
        return str(error)
    return None


class Review:
    """One model, one `ImageSet`, one output folder.

    Args:
        run: str, the run folder or `.keras` file reviewed.
        images: `keras_amb.review.images.ImageSet`.
        output_dir: str, where corrected maps (`maps/`) and fine-tuning runs
            go; nothing is written elsewhere.
        model: optional loaded model (default: the run's).
        batch_size: int, images per forward pass.
        config: dict, the run's config (for the fine-tuning command).

    Example:
    >>> review = Review("saved_models/RUN", images, "saved_models/RUN/review")  # doctest: +SKIP
    >>> review.order()[:5]  # doctest: +SKIP
    """

    def __init__(self, run, images, output_dir, model=None, batch_size=32, config=None):
        from keras_amb.runs import Run

        self.run = os.fspath(run)
        opened = Run.open(self.run)
        self.model = model if model is not None else opened.load_model()
        self.config = dict(config if config is not None else opened.config())
        self.images = images
        self.output_dir = os.fspath(output_dir)
        self.maps_dir = os.path.join(self.output_dir, "maps")
        self.store = MapStore(self.maps_dir)
        self.batch_size = int(batch_size)
        self.class_names = list(self.model.get_class_names())
        n = len(images)
        self.predicted = np.full(n, -1, np.int32)
        self.confidence = np.zeros(n, np.float32)
        self.top5 = [None] * n
        self.attention = None
        self.scored = np.zeros(n, bool)
        # The fraction of the attention map's energy inside the object (NaN
        # where the dataset has no masks).
        self.energy = np.full(n, np.nan, np.float32)
        self.errors = {}
        self._model_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._cache = collections.OrderedDict()
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()
        self._finetune_lock = threading.Lock()
        self._scorer = None
        self._stop = threading.Event()
        self.finetune = None
        self._after_model = None
        self.read_only = _not_writable(self.output_dir)

    # === Scoring ===

    def image(self, index):
        """The image's pixels; an unreadable file gives a black image and
        its error in `errors`."""
        from keras_amb.data.image_io import ImageReadError

        try:
            return self.images.image(index)
        except ImageReadError as error:
            self.errors[index] = str(error)
            return np.zeros((8, 8, 3), np.uint8)

    def score(self, indices):
        """Predicts the images at `indices` not yet scored, in batches."""
        import keras

        from keras_amb.inference import preprocess

        todo = [int(i) for i in indices if not self.scored[i]]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            x = np.stack([
                preprocess(self.image(i), self.model.image_size, self.model.resize_ratio)
                for i in chunk
            ])
            with self._model_lock:
                out = self.model.predict_on_batch(x)
                probabilities = np.asarray(keras.ops.convert_to_numpy(out["probabilities"]))
                attention = np.asarray(keras.ops.convert_to_numpy(out["attention"]), np.float32)
                if self.attention is None:  # once, whichever thread scores first
                    self.attention = np.zeros((len(self.images),) + attention.shape[1:],
                                              np.float32)
            tops = self.model.decode_predictions(probabilities, min(5, len(self.class_names)))
            for row, i in enumerate(chunk):
                self.predicted[i] = int(np.argmax(probabilities[row]))
                self.confidence[i] = float(probabilities[row].max())
                self.top5[i] = [(name, float(p)) for name, p in tops[row]]
                self.attention[i] = attention[row]
                if self.images.mask is not None:
                    self.energy[i] = self._energy(i)
                self.scored[i] = True

    def _energy(self, index):
        mask = np.asarray(self.images.mask(index)) > 0
        grey = self._whole_image_map(index, self.attention[index]).astype(np.float32)
        if mask.shape != grey.shape:
            return np.nan
        return float((grey * mask).sum() / max(float(grey.sum()), 1e-6))

    def start_scoring(self):
        """Scores every image in a background thread, a batch at a time."""

        def work():
            for start in range(0, len(self.images), self.batch_size):
                if self._stop.is_set():
                    return
                self.score(range(start, min(start + self.batch_size, len(self.images))))

        self._scorer = threading.Thread(target=work, name="review-scorer", daemon=True)
        self._scorer.start()

    def stop(self):
        """Stops the background scoring after its current batch."""
        self._stop.set()
        self.wait_scored()

    def wait_scored(self, timeout=None):
        if self._scorer is not None:
            self._scorer.join(timeout)

    # === What the gallery shows ===

    def misclassified(self, index):
        label = self.images.labels[index]
        return bool(self.scored[index] and label is not None and self.predicted[index] != label)

    def edited(self, index):
        return os.path.isfile(self.store.path(self.images.keys[index]))

    def order(self, only=None, class_name=None):
        """Indices to review: misclassified first (most confident first),
        then the correctly classified below `LOW_CONFIDENCE` (least
        confident first), then the rest by the attention energy inside the
        object (least first) where known, else by confidence; images not
        scored yet last, in dataset order.

        Args:
            only: None, "misclassified", "edited" or "unedited".
            class_name: None, or keep images whose true or predicted class
                is this one.
        """
        n = len(self.images)
        wrong = np.array([self.misclassified(i) for i in range(n)], bool)
        conf = self.confidence
        # Tiers: 0 misclassified, 1 low confidence, 2 the rest, 3 unscored;
        # within a tier by `within`; ties by dataset order.
        tier = np.where(wrong, 0, np.where(conf < LOW_CONFIDENCE, 1, 2))
        tier = np.where(self.scored, tier, 3)
        rest = np.where(np.isnan(self.energy), conf, self.energy)
        within = np.where(tier == 0, -conf, np.where(tier == 1, conf, rest))
        order = np.lexsort((np.arange(n), within, tier))
        keep = np.ones(n, bool)
        if only == "misclassified":
            keep &= wrong
        elif only in ("edited", "unedited"):
            edited = np.array([self.edited(i) for i in range(n)], bool)
            keep &= edited if only == "edited" else ~edited
        elif only not in (None, "", "all"):
            raise ReviewError(f"filter must be misclassified, edited or unedited, got {only!r}")
        if class_name:
            if class_name not in self.class_names:
                raise ReviewError(f"unknown class {class_name!r}")
            c = self.class_names.index(class_name)
            labels = np.array([-2 if v is None else v for v in self.images.labels])
            keep &= (labels == c) | (self.predicted == c)
        return [int(i) for i in order if keep[i]]

    def page(self, number=0, per_page=24, only=None, class_name=None):
        """One page of the gallery; its images are scored first if needed."""
        if number < 0 or not 1 <= per_page <= 200:
            raise ReviewError(f"page must be >= 0 and per_page in [1, 200], got {number}, "
                              f"{per_page}")
        for _ in range(4):
            order = self.order(only, class_name)
            chosen = order[number * per_page : (number + 1) * per_page]
            if self.scored[chosen].all():
                break
            # Scores move images: score the page, then place it again.
            self.score(chosen)
        return {
            "page": number, "per_page": per_page, "matching": len(order),
            "items": [self.item(i) for i in chosen], "summary": self.summary(),
        }

    def item(self, index):
        label = self.images.labels[index]
        key = self.images.keys[index]
        return {
            "key": key,
            "true_class": None if label is None else self.class_names[label],
            "predicted_class": self.class_names[self.predicted[index]]
            if self.scored[index] else None,
            "probability": round(float(self.confidence[index]), 4) if self.scored[index] else None,
            "top5": self.top5[index],
            "misclassified": self.misclassified(index),
            "energy_in_object": None if np.isnan(self.energy[index])
            else round(float(self.energy[index]), 4),
            "edited": self.edited(index),
            "version": self.version(key),
            "error": self.errors.get(index),
        }

    def summary(self):
        wrong = [i for i in range(len(self.images)) if self.misclassified(i)]
        edited = set(self.store.index())
        present = {k for k in edited if os.path.isfile(self.store.path(k))}
        return {
            "total": len(self.images),
            "scored": int(self.scored.sum()),
            "misclassified": len(wrong),
            "misclassified_corrected": sum(self.images.keys[i] in present for i in wrong),
            "corrected": len(present & set(self.images.keys)),
        }

    # === Pictures ===

    def lookup(self, key):
        """The index of `key`; `UnknownImageError` for anything else."""
        try:
            return self.images.index_of(key)
        except KeyError:
            raise UnknownImageError(f"no image with key {key!r} in this review") from None

    def _cached(self, name, make):
        with self._cache_lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
        value = make()
        size = _size(value)
        with self._cache_lock:
            if name not in self._cache and size <= CACHE_BYTES // 4:
                self._cache[name] = value
                self._cache_bytes += size
            while self._cache_bytes > CACHE_BYTES:
                _, dropped = self._cache.popitem(last=False)
                self._cache_bytes -= _size(dropped)
        return value

    def picture(self, index):
        """The image as a PNG."""
        return self._cached(("picture", index), lambda: png_bytes(self.image(index)))

    def _whole_image_map(self, index, values):
        from keras_amb.explain.visualize import map_on_image

        height, width = self.image(index).shape[:2]
        return map_on_image(values, height, width, self.model.resize_ratio)

    def model_map(self, index):
        """The model's attention over the whole image, grey uint8."""
        self.score([index])
        return self._whole_image_map(index, self.attention[index])

    def reference_map(self, index, method):
        """CAM or Grad-CAM of the predicted class over the whole image."""
        from keras_amb.explain import maps as explain_maps
        from keras_amb.inference import preprocess

        if method not in ("cam", "gradcam"):
            raise ReviewError(f"kind must be model, corrected, cam, gradcam or after, got {method!r}")

        def make():
            x = preprocess(self.image(index), self.model.image_size,
                           self.model.resize_ratio)[None]
            with self._model_lock:
                values = explain_maps.compute(self.model, x, method)[0]
            return self._whole_image_map(index, values)

        return self._cached((method, index), make)

    def corrected_map(self, index):
        from keras_amb.data.map_store import read_map

        path = self.store.path(self.images.keys[index])
        if not os.path.isfile(path):
            raise UnknownImageError(f"{self.images.keys[index]} has no corrected map yet")
        return (read_map(path) * 255).round().astype(np.uint8)

    def map_png(self, index, kind):
        if kind == "model":
            return png_bytes(self.model_map(index))
        if kind == "corrected":
            return png_bytes(self.corrected_map(index))
        if kind == "after":
            return png_bytes(self.after_map(index))
        return png_bytes(self.reference_map(index, kind))

    def thumbnail(self, index):
        """The image with its current map (corrected, else the model's)
        blended over it, at most `THUMBNAIL` pixels a side, as a PNG."""
        from PIL import Image

        from keras_amb.explain.overlay import overlay

        version = self.version(self.images.keys[index])

        def make():
            image = self.image(index)
            grey = self.corrected_map(index) if version != "none" else self.model_map(index)
            blended = overlay(image, grey.astype(np.float32) / 255.0, alpha=0.5)
            picture = Image.fromarray(blended)
            scale = THUMBNAIL / max(picture.size)
            if scale < 1:
                picture = picture.resize((max(1, round(picture.width * scale)),
                                          max(1, round(picture.height * scale))))
            elif scale > 1:
                factor = int(scale)
                picture = picture.resize((picture.width * factor, picture.height * factor),
                                         Image.NEAREST)
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            return buffer.getvalue()

        return self._cached(("thumbnail", index, version), make)

    # === Saving corrections ===

    def version(self, key):
        """A fingerprint of `key`'s corrected map file, "none" without one."""
        path = self.store.path(key)
        try:
            with open(path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()[:16]
        except FileNotFoundError:
            return "none"

    def check_map_upload(self, index, data):
        """The uploaded corrected map as uint8 `(H, W)`; `ReviewError` unless
        it is a grey 8-bit PNG of the image's size."""
        from PIL import Image

        if len(data) > MAX_UPLOAD_BYTES:
            raise ReviewError(f"map upload of {len(data)} bytes is over the limit of "
                              f"{MAX_UPLOAD_BYTES}")
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ReviewError("the corrected map must be a PNG file")
        height, width = self.image(index).shape[:2]
        try:
            with Image.open(io.BytesIO(data)) as picture:
                if picture.format != "PNG":
                    raise ReviewError("the corrected map must be a PNG file")
                if picture.size != (width, height):
                    raise ReviewError(
                        f"the corrected map is {picture.width}x{picture.height}; the image "
                        f"is {width}x{height}")
                if picture.mode not in ("L", "LA", "RGB", "RGBA"):
                    raise ReviewError(f"the corrected map must be 8-bit grey, not mode "
                                      f"{picture.mode}")
                picture.load()
                array = np.asarray(picture)
        except ReviewError:
            raise
        except Exception as error:
            raise ReviewError(f"the corrected map is not a readable PNG ({error})") from None
        if array.ndim == 3:
            colour = array[..., :3]
            if not (np.array_equal(colour[..., 0], colour[..., 1])
                    and np.array_equal(colour[..., 0], colour[..., 2])):
                raise ReviewError("the corrected map must be grey (equal red, green, blue)")
            array = colour[..., 0]
        return np.ascontiguousarray(array, np.uint8)

    def save(self, key, data, expected_version):
        """Saves a corrected map unless it changed since `expected_version`.

        Returns:
            The new version.

        Raises:
            UnknownImageError, ReviewError (bad upload, nothing written),
            MapConflictError (saved by someone else since; nothing written).
        """
        index = self.lookup(key)
        if self.read_only:
            raise ReadOnlyError(f"saving is off: {self.read_only}")
        grey = self.check_map_upload(index, data)
        if not expected_version:
            raise ReviewError("a save must say which version it replaces (If-Match)")
        with self._save_lock:
            current = self.version(key)
            if current != expected_version:
                raise MapConflictError(
                    f"the map of {key} was saved elsewhere (another tab?) since this page "
                    f"loaded it; reload it to see that version, then edit again")
            self.store.write(key, grey, source="edited", model=os.path.abspath(self.run),
                             dataset=self.images.dataset, split=self.images.split)
            return self.version(key)

    # === Fine-tuning ===

    def finetune_argv(self, epochs=3, output=None):
        """The `keras-amb train` arguments that fine-tune on the corrections
        (None for unlabelled images: they cannot train)."""
        if self.images.dataset is None:
            return None
        argv = ["keras-amb", "train", "--dataset", self.images.dataset]
        config_file = os.path.join(self.run, "config.yaml")
        if os.path.isfile(config_file):
            argv += ["--config", config_file]
        else:  # a bare model file: its own architecture, no other weights
            argv += ["--backbone", self.model.backbone, "--image-size",
                     str(self.model.image_size), "--weights", "none"]
        argv += ["--architecture", "abn", "--init-from", self.run,
                 "--attention-targets", self.maps_dir, "--epochs", str(int(epochs)),
                 "--output", output or os.path.join(self.output_dir, "finetune-<timestamp>")]
        return argv

    def start_finetune(self, epochs=3):
        """Runs the fine-tuning command in a child process, its log in
        `<output>/finetune-<timestamp>.log`; one at a time (a second request
        while one runs gets `MapConflictError`, 409)."""
        with self._finetune_lock:
            return self._start_finetune(epochs)

    def _start_finetune(self, epochs):
        if self.read_only:
            raise ReadOnlyError(f"fine-tuning is off: {self.read_only}")
        if epochs < 1 or epochs > 1000:
            raise ReviewError(f"epochs must be in [1, 1000], got {epochs}")
        if self.images.dataset is None:
            raise ReviewError("fine-tuning needs labels: review a dataset (--dataset), "
                              "not --images")
        if self.finetune is not None and self.finetune["process"].poll() is None:
            raise MapConflictError("a fine-tuning run is already running")
        if not self.summary()["corrected"]:
            raise ReviewError("save at least one corrected map first")
        output = _free_name(os.path.join(self.output_dir, f"finetune-{timestamp()}"))
        argv = self.finetune_argv(epochs, output)
        os.makedirs(self.output_dir, exist_ok=True)
        log_path = output + ".log"
        log = open(log_path, "wb")
        import keras

        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
                   KERAS_BACKEND=keras.backend.backend())
        process = subprocess.Popen(
            [sys.executable, "-c", "from keras_amb.cli.main import main; main()"] + argv[1:],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        log.close()
        # Reaped when it ends, whether or not the page asks (no zombie).
        threading.Thread(target=process.wait, daemon=True).start()
        self._after_model = None
        self.finetune = {"process": process, "output": output, "log": log_path,
                         "epochs": int(epochs), "command": shlex.join(argv)}
        return self.finetune_status()

    def finetune_status(self, offset=0):
        if self.finetune is None:
            return {"state": "idle"}
        job = self.finetune
        code = job["process"].poll()
        with open(job["log"], "rb") as f:
            f.seek(max(0, int(offset)))
            text = f.read().decode("utf-8", "replace")
            end = f.tell()
        epoch = 0
        history = os.path.join(job["output"], "history.csv")
        if os.path.isfile(history):
            with open(history, encoding="utf-8") as f:
                epoch = max(0, sum(1 for line in f if line.strip()) - 1)
        state = "running" if code is None else "finished" if code == 0 else "failed"
        return {"state": state, "returncode": code, "log": text, "offset": end,
                "epoch": epoch, "epochs": job["epochs"], "output": job["output"],
                "command": job["command"]}

    def after_map(self, index):
        """The fine-tuned model's attention over the whole image."""
        from keras_amb.inference import preprocess

        model = self._finetuned()

        def make():
            import keras

            x = preprocess(self.image(index), model.image_size, model.resize_ratio)[None]
            with self._model_lock:
                out = model.predict_on_batch(x)
            values = np.asarray(keras.ops.convert_to_numpy(out["attention"]))[0]
            return self._whole_image_map(index, values)

        return self._cached(("after", self.finetune["output"], index), make)

    def _finetuned(self):
        from keras_amb.runs import load_model

        status = self.finetune_status()
        if status["state"] != "finished":
            raise UnknownImageError("no finished fine-tuning run yet")
        if self._after_model is None:
            self._after_model = load_model(os.path.join(self.finetune["output"], "model.keras"))
        return self._after_model

    def before_after(self):
        """Each corrected image's distance to its correction (mean absolute
        difference, maps in [0, 1]) before and after fine-tuning."""
        self._finetuned()
        rows = []
        for key in sorted(self.store.index()):
            if key not in self.images._index or not os.path.isfile(self.store.path(key)):
                continue
            index = self.images.index_of(key)
            target = self.corrected_map(index).astype(np.float32) / 255
            before = self.model_map(index).astype(np.float32) / 255
            after = self.after_map(index).astype(np.float32) / 255
            rows.append({"key": key, "before": round(float(np.abs(before - target).mean()), 4),
                         "after": round(float(np.abs(after - target).mean()), 4)})
        return rows
