"""Callbacks of `keras-amb train`: safe checkpoints, history, NaN guard, maps."""

import csv
import math
import os
import time

import keras
import numpy as np

from keras_amb.files import atomic_save_model
from keras_amb.files import atomic_write
from keras_amb.models import force_log
from keras_amb.models.objective import FEATURE_STATISTICS
from keras_amb.errors import NonFiniteLossError

LOSS_TERMS = (
    "att_loss", "per_loss", "pc_loss", "amb_loss", "cot_loss", "attention_target_loss",
    "area_loss", "smoothness_loss", "erasing_loss",
)
HISTORY_METRICS = ("loss",) + LOSS_TERMS + (
    "top1", "top5", "att_top1",
) + FEATURE_STATISTICS
# The norm of the gradient each weighted loss term sends to the attention
# map's weights, on a fixed training batch at the end of each epoch.
MAP_GRADIENT_COLUMNS = tuple(f"map_grad_{t}" for t in LOSS_TERMS)
# The attention map's shape on the same batch (`MapShapeWarning`).
MAP_SHAPE_COLUMNS = ("map_mean", "map_area_above_half")
HISTORY_COLUMNS = (
    ["stage", "epoch", "learning_rate", "seconds"]
    + list(HISTORY_METRICS)
    + [f"val_{m}" for m in HISTORY_METRICS]
    + list(MAP_GRADIENT_COLUMNS)
    + list(MAP_SHAPE_COLUMNS)
)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training when any loss component becomes NaN or infinite.

    Raises `NonFiniteLossError` naming the component, the epoch and batch;
    the last epoch's checkpoint is left as it was (this callback must come
    before the checkpoint's in the list).

    Each batch's total loss is read one batch late, when the next step has
    been dispatched, so the check never makes the device wait for the step
    in flight; a non-finite total (any component's NaN or infinity reaches
    it) is then taken apart to name the component. The last batch of an
    epoch is checked at the epoch's end.
    """

    def __init__(self, stage, checkpoint_path=None):
        super().__init__()
        self.stage = stage
        self.checkpoint_path = checkpoint_path
        self.epoch = 0
        self._pending = None  # (batch, logs) not yet checked

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._pending = None

    def on_train_batch_end(self, batch, logs=None):
        if self._pending is not None:
            self._check(*self._pending)
        self._pending = (batch, dict(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        if self._pending is not None:
            self._check(*self._pending)
            self._pending = None

    def _check(self, batch, logs):
        total = logs.get("loss")
        if total is not None and math.isfinite(float(total)):
            return
        # The components first: they say where the NaN came from.
        for name in sorted(logs, key=lambda n: n == "loss"):
            if not name.endswith("loss"):
                continue
            value = float(logs[name])
            if not math.isfinite(value):
                self.model.stop_training = True
                kept = (
                    f" The last good checkpoint is {self.checkpoint_path}."
                    if self.checkpoint_path and os.path.isfile(self.checkpoint_path)
                    else ""
                )
                raise NonFiniteLossError(
                    f"{name} became {value} in stage {self.stage!r}, epoch "
                    f"{self.epoch + 1}, batch {batch + 1}; training stopped.{kept} "
                    "Try a lower learning rate or PC weights."
                )


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: last (and best) checkpoint, history row, then state.

    Each file is written atomically and the state last, so a run killed at
    any moment resumes from a consistent epoch.

    Args:
        run: `keras_amb.app.runs.Run`, the run folder.
        stage: str, `"abn"` or `"mining"`.
        stage_index: int, the stage's position in the run.
        monitor: str, the log that picks the best checkpoint (higher is better).
    """

    def __init__(self, run, stage, stage_index, monitor="val_top1"):
        super().__init__()
        self.run = run
        self.stage = stage
        self.stage_index = stage_index
        self.monitor = monitor
        self.last_path = run.path("checkpoints", f"{stage}-last.keras")
        self.best_path = run.path("checkpoints", f"{stage}-best.keras")
        self.best = (run.state() or {}).get("best", {}).get(stage, -math.inf)
        self._start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        atomic_save_model(self.model, self.last_path)
        score = logs.get(self.monitor, logs.get("top1", -math.inf))
        best = dict((self.run.state() or {}).get("best", {}))
        if score > self.best:
            self.best = score
            best[self.stage] = score
            atomic_save_model(self.model, self.best_path)
        lr = self.model.optimizer.learning_rate
        row = {
            "stage": self.stage,
            "epoch": epoch + 1,
            "learning_rate": float(keras.ops.convert_to_numpy(lr)),
            "seconds": round(time.time() - self._start, 2),
        }
        row.update({k: v for k, v in logs.items() if k in HISTORY_COLUMNS})
        append_history(self.run.path("history.csv"), row)
        self.run.update_state(
            stage=self.stage, stage_index=self.stage_index,
            completed_epochs=epoch + 1, best=best,
        )


def _history_header(path):
    """The columns of an existing history file (earlier releases wrote
    fewer), or None."""
    if not os.path.isfile(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), None)


def append_history(path, row):
    header = _history_header(path)
    new = header is None
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, fieldnames=header or HISTORY_COLUMNS, extrasaction="ignore"
        )
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def truncate_history(path, stages, stage_index, completed_epochs):
    """Drops rows written after the last recorded state (a kill in between)."""
    if not os.path.isfile(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    order = {s: i for i, s in enumerate(stages)}
    kept = [
        r for r in rows
        if r.get("stage") in order and (
            order[r["stage"]] < stage_index
            or (order[r["stage"]] == stage_index and int(r["epoch"]) <= completed_epochs)
        )
    ]
    if len(kept) != len(rows):
        header = _history_header(path) or HISTORY_COLUMNS

        def write(tmp):
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(kept)

        atomic_write(path, write, suffix=".csv")


class AttentionImages(keras.callbacks.Callback):
    """Logs attention maps of a few fixed validation images to TensorBoard."""

    def __init__(self, log_dir, images, stage):
        super().__init__()
        self.log_dir = log_dir
        self.images = np.asarray(images, dtype=np.float32)
        self.stage = stage
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        from keras_amb.explain.overlay import overlay

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        outputs = self.model.predict_on_batch(self.images)
        maps = np.asarray(keras.ops.convert_to_numpy(outputs["attention"]))
        panels = np.stack(
            [overlay(image.astype(np.uint8), a) for image, a in zip(self.images, maps)]
        )
        with self._writer.as_default():
            tf.summary.image(
                f"{self.stage}/attention", panels, step=epoch + 1,
                max_outputs=len(panels),
            )
        self._writer.flush()


def _tf_distributed():
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy()


class MapGradientNorms(keras.callbacks.Callback):
    """Logs which force drives the attention map, each epoch.

    At the end of each epoch, the norm of the gradient that each weighted
    loss term (eq. 5's, and the complement step's) sends to the attention map's
    weights, on one fixed training batch, as `map_grad_<term>` (history.csv);
    not under a TensorFlow distribution strategy (`--distribute`).

    Args:
        batch: one training batch, as the model's `fit` receives it.
    """

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or _tf_distributed():
            # Under a tf.distribute strategy the variables are mirrored and
            # can only be differentiated per replica: not logged there.
            return
        norms = force_log.term_gradient_norms(
            self.model, self.batch, self.model.attention_branch.map_variables
        )
        logs.update({f"map_grad_{name}": value for name, value in norms.items()})


class MapShapeWarning(keras.callbacks.Callback):
    """Logs the attention map's shape each epoch and warns once when it has
    lost its shape.

    At the end of each epoch, on one fixed training batch in inference mode,
    the map's mean (`map_mean`) and the fraction of it at 0.5 or above
    (`map_area_above_half`) go to history.csv. Two failures are named once
    each: a map that covers nearly everything (over 95% above 0.5: the
    paper's objective does this, METHOD.md "Why the paper's map is flat")
    and a map that has collapsed to nothing (no cell above 0.5 and a mean
    under 0.05: the area term outweighs the mining terms).

    Args:
        batch: one training batch, as the model's `fit` receives it.
        log: callable taking a line of text.
    """

    def __init__(self, batch, log):
        super().__init__()
        self.batch = batch
        self.log = log
        self.warned = set()

    def on_epoch_end(self, epoch, logs=None):
        from keras_amb.models import compiled

        if _tf_distributed():  # mirrored variables: not probed (as the force log)
            return
        x = self.batch[0]
        images = x["images"] if isinstance(x, dict) else x
        attention = compiled.compiled(
            self.model, "map_shape", lambda m, images: m(images, training=False)["attention"])
        maps = np.asarray(keras.ops.convert_to_numpy(attention(keras.ops.convert_to_numpy(images))))
        mean, area = float(maps.mean()), float((maps >= 0.5).mean())
        if logs is not None:
            logs.update(map_mean=mean, map_area_above_half=area)
        if area > 0.95 and "wash" not in self.warned:
            self.warned.add("wash")
            self.log(
                f"Warning: {area:.0%} of the attention map is above 0.5 at epoch {epoch + 1}: "
                "it covers nearly everything and explains little. The default objective's "
                "area term (--area-weight, --amb-gradient attention) keeps it on the "
                "evidence (METHOD.md, 'Why the paper's map is flat')."
            )
        if area == 0.0 and mean < 0.05 and "collapse" not in self.warned:
            self.warned.add("collapse")
            self.log(
                f"Warning: the attention map has collapsed at epoch {epoch + 1} (mean "
                f"{mean:.3f}, no cell above 0.5): the area term outweighs the mining terms. "
                "Lower --area-weight, or try --area-target 0.1, which holds a tenth of "
                "the map up (METHOD.md, 'The map terms')."
            )


class FeatureCollapseWarning(keras.callbacks.Callback):
    """Warns once when a PC feature's mean norm falls below half its start.

    PC pulls features towards their class centers; with centers near the
    origin it pulls every feature to zero (METHOD.md). The reference is the
    norm measured when the centers were initialised, else the first epoch's.

    Args:
        log: callable taking a line of text.
        reference: dict, `per_feature_norm` / `att_feature_norm` at the start.
    """

    def __init__(self, log, reference=None):
        super().__init__()
        self.log = log
        self.reference = dict(reference or {})
        self.warned = set()

    def on_epoch_end(self, epoch, logs=None):
        for name in ("per_feature_norm", "att_feature_norm"):
            if name not in (logs or {}):
                continue
            value = float(logs[name])
            start = self.reference.setdefault(name, value)
            if name not in self.warned and value < 0.5 * start:
                self.warned.add(name)
                self.log(
                    f"Warning: {name} fell from {start:.3g} to {value:.3g} at epoch "
                    f"{epoch + 1} (below half): the PC loss is collapsing the "
                    "features. Lower pc_weight, or check the centers' initialisation "
                    "(METHOD.md, 'PC loss')."
                )
