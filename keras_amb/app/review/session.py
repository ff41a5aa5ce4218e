"""A review: one model's attention maps over keyed images, corrected by a person.

`Review` holds what the review page shows and changes, independent of the
web framework (`keras_amb.app.review.server` only routes requests to it):

- predictions and attention maps, computed in batches (a background thread
  scores every image, a page's images are scored first when asked for) and
  kept small (a map is `h x w` floats), so 10,000 images cost little;
- the order to review them in, misclassified and unsure first
  (`images.review_order`);
- corrected maps saved in `<output>/maps` (`data.map_store`), atomically,
  refusing to overwrite a map saved since the page loaded it;
- the maps before and after fine-tuning on the corrections
  (`review.finetune`, the child process that runs it).
"""

import hashlib
import os
import threading

import numpy as np

from keras_amb.app import safety
from keras_amb.data.map_store import MapStore
from keras_amb.app.review.images import png_bytes
from keras_amb.app.review.images import read_map_upload
from keras_amb.app.review.images import review_order
from keras_amb.app.review.images import thumbnail_png
from keras_amb.errors import MapConflictError
from keras_amb.errors import ReadOnlyError
from keras_amb.errors import ReviewError  # noqa: F401 (re-exported)
from keras_amb.errors import UnknownImageError
from keras_amb.app.review.byte_cache import ByteCache
from keras_amb.app.review.finetune import Finetune

# Pictures, thumbnails and maps kept for the page, bounded in bytes (a 16 Mpx
# photo's PNG is tens of MB); the least recently used go first.
CACHE_BYTES = 128 * 2**20
THUMBNAIL = 160
LOW_CONFIDENCE = 0.5


class Review:
    """One model, one `ImageSet`, one output folder.

    Args:
        run: str, the run folder or `.keras` file reviewed.
        images: `keras_amb.app.review.images.ImageSet`.
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
        from keras_amb.app.runs import Run

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
        self.cache = ByteCache(CACHE_BYTES)
        self._scorer = None
        self._stop = threading.Event()
        self.finetune = Finetune(self.run, self.model, images.dataset, self.output_dir,
                                 self.maps_dir)
        self.read_only = safety.why_not_writable(self.output_dir)

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
        order = review_order(wrong, self.confidence, self.scored, self.energy, LOW_CONFIDENCE)
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

    def picture(self, index):
        """The image as a PNG."""
        return self.cache.get(("picture", index), lambda: png_bytes(self.image(index)))

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

        return self.cache.get((method, index), make)

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
        version = self.version(self.images.keys[index])

        def make():
            grey = self.corrected_map(index) if version != "none" else self.model_map(index)
            return thumbnail_png(self.image(index), grey, THUMBNAIL)

        return self.cache.get(("thumbnail", index, version), make)

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
        height, width = self.image(index).shape[:2]
        return read_map_upload(data, height, width)

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

    # === Fine-tuning (`review.finetune`) ===

    def start_finetune(self, epochs=3):
        """Fine-tunes on the corrections in a child process, one at a time."""
        return self.finetune.start(epochs, self.summary()["corrected"], self.read_only)

    def after_map(self, index):
        """The fine-tuned model's attention over the whole image."""
        from keras_amb.inference import preprocess

        model = self.finetune.finetuned_model()

        def make():
            import keras

            x = preprocess(self.image(index), model.image_size, model.resize_ratio)[None]
            with self._model_lock:
                out = model.predict_on_batch(x)
            values = np.asarray(keras.ops.convert_to_numpy(out["attention"]))[0]
            return self._whole_image_map(index, values)

        return self.cache.get(("after", self.finetune.job["output"], index), make)

    def before_after(self):
        """Each corrected image's distance to its correction (mean absolute
        difference, maps in [0, 1]) before and after fine-tuning."""
        self.finetune.finetuned_model()
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
