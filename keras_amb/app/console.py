"""The training console: one short line per epoch, a progress bar in a terminal.

Keras's own epoch line lists every logged value (31 of them for the
proposed model: feature norms, zero fractions, `map_grad_*`), and the
accuracy is lost among them. `EpochSummary` prints what a user watches:
the loss, top-1, validation top-1, the attention branch's validation top-1
and the learning rate, with the epoch's time; the rest stays in
`history.csv` and TensorBoard, and `keras-amb train --verbose` prints
Keras's full line instead.

Example:

```python
from keras_amb.app.console import EpochSummary

model.fit(train_ds, validation_data=val_ds, epochs=8, verbose=0,
          callbacks=[EpochSummary(print, "mining", epochs=8)])
# mining epoch 1/8: loss 4.985, top-1 0.268, val top-1 0.118, val attention top-1 0.150, lr 0.05 (36 s)
```
"""

import time

import keras

# (logged name, shown as), in the order shown.
SHOWN = (("loss", "loss"), ("top1", "top-1"), ("val_top1", "val top-1"),
         ("val_att_top1", "val attention top-1"), ("learning_rate", "lr"))


def summary_line(stage, epoch, epochs, logs, seconds):
    """`"abn epoch 3/8: loss 1.234, top-1 0.912, ... (21 s)"`."""
    parts = []
    for key, label in SHOWN:
        if key in logs:
            value = float(logs[key])
            parts.append(f"{label} {value:.3g}" if key == "learning_rate"
                         else f"{label} {value:.3f}")
    return f"{stage} epoch {epoch}/{epochs}: {', '.join(parts)} ({seconds:.0f} s)"


class EpochSummary(keras.callbacks.Callback):
    """Logs `summary_line` after each epoch; with `progress`, a progress bar
    (steps and loss) during it.

    Args:
        log: callable taking a line.
        stage: str, the stage's name, at the start of each line.
        epochs: int, the stage's last epoch.
        progress: bool, draw a progress bar (for a terminal).
    """

    def __init__(self, log, stage, epochs, progress=False):
        super().__init__()
        self.log = log
        self.stage = stage
        self.epochs = int(epochs)
        self.progress = progress
        self._bar = None
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        if self.progress:
            self._bar = keras.utils.Progbar(self.params.get("steps"), width=24, verbose=1,
                                            stateful_metrics=["loss"])

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None and logs and "loss" in logs:
            self._bar.update(batch + 1, [("loss", float(logs["loss"]))])

    def on_epoch_end(self, epoch, logs=None):
        self._bar = None
        seconds = time.perf_counter() - (self._start or time.perf_counter())
        self.log(summary_line(self.stage, epoch + 1, self.epochs, logs or {}, seconds))
