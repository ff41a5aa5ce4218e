"""Fine-tuning on a review's corrected maps: the `keras-amb train` command
that does it, run in a child process, one at a time, and its progress."""

import os
import shlex
import subprocess
import sys
import threading

from keras_amb.errors import MapConflictError
from keras_amb.errors import ReadOnlyError
from keras_amb.errors import ReviewError
from keras_amb.errors import UnknownImageError
from keras_amb.app.runs import timestamp


def _free_name(base):
    """`base`, or `base-2`, `base-3`, ...: the first with no folder or log."""
    name, n = base, 1
    while os.path.exists(name) or os.path.exists(name + ".log"):
        n += 1
        name = f"{base}-{n}"
    return name


def _state_of(returncode):
    """A child's state from its `poll()`."""
    return "running" if returncode is None else "finished" if returncode == 0 else "failed"


class Finetune:
    """The fine-tuning of one review: ABN initialised from the reviewed run
    and trained with the corrected maps as attention targets (Mitsuhara et
    al.), its log in `<output>/finetune-<timestamp>.log`.

    Args:
        run: str, the reviewed run folder or `.keras` file.
        model: the reviewed model (for a bare file's backbone and size).
        dataset: str or None, the dataset reviewed (None: unlabelled images,
            which cannot train).
        output_dir: str, the review's output folder.
        maps_dir: str, where the corrected maps are.

    Example:
    >>> job = Finetune("saved_models/RUN", model, "synthetic", "out", "out/maps")  # doctest: +SKIP
    >>> job.argv(epochs=3)[:4]  # doctest: +SKIP
    ['keras-amb', 'train', '--dataset', 'synthetic']
    """

    def __init__(self, run, model, dataset, output_dir, maps_dir):
        self.run, self.model, self.dataset = run, model, dataset
        self.output_dir, self.maps_dir = output_dir, maps_dir
        self.job = None
        self._loaded = (None, None)  # (model file, its model)
        self._lock = threading.Lock()

    def argv(self, epochs=3, output=None):
        """The `keras-amb train` arguments that fine-tune on the corrections
        (None for unlabelled images)."""
        if self.dataset is None:
            return None
        argv = ["keras-amb", "train", "--dataset", self.dataset]
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

    def start(self, epochs, corrected, read_only=None):
        """Starts the command in a child process; one at a time (a second
        request while one runs gets `MapConflictError`, 409).

        Args:
            epochs: int in [1, 1000].
            corrected: int, how many corrected maps are saved (at least 1).
            read_only: None, or why the output folder cannot be written.
        """
        with self._lock:
            if read_only:
                raise ReadOnlyError(f"fine-tuning is off: {read_only}")
            if epochs < 1 or epochs > 1000:
                raise ReviewError(f"epochs must be in [1, 1000], got {epochs}")
            if self.dataset is None:
                raise ReviewError("fine-tuning needs labels: review a dataset (--dataset), "
                                  "not --images")
            if self.job is not None and self.job["process"].poll() is None:
                raise MapConflictError("a fine-tuning run is already running")
            if not corrected:
                raise ReviewError("save at least one corrected map first")
            output = _free_name(os.path.join(self.output_dir, f"finetune-{timestamp()}"))
            argv = self.argv(epochs, output)
            os.makedirs(self.output_dir, exist_ok=True)
            log_path = output + ".log"
            import keras

            env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
                       KERAS_BACKEND=keras.backend.backend())
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-c", "from keras_amb.cli.main import main; main()"]
                    + argv[1:], stdout=log, stderr=subprocess.STDOUT, env=env,
                )
            # Reaped when it ends, whether or not the page asks (no zombie).
            threading.Thread(target=process.wait, daemon=True).start()
            self.job = {"process": process, "output": output, "log": log_path,
                        "epochs": int(epochs), "command": shlex.join(argv)}
        return self.status()

    def state(self):
        """`idle`, `running`, `finished` or `failed` (the child is polled,
        nothing read)."""
        return "idle" if self.job is None else _state_of(self.job["process"].poll())

    def status(self, offset=0):
        """The state, the log from byte `offset` on, and the epochs done."""
        if self.job is None:
            return {"state": "idle"}
        job = self.job
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
        return {"state": _state_of(code), "returncode": code, "log": text, "offset": end,
                "epoch": epoch, "epochs": job["epochs"], "output": job["output"],
                "command": job["command"]}

    def finetuned_model(self):
        """The fine-tuned model (loaded once per run); `UnknownImageError`
        (404) until a run has finished."""
        from keras_amb.app.runs import load_model

        if self.state() != "finished":
            raise UnknownImageError("no finished fine-tuning run yet")
        path = os.path.join(self.job["output"], "model.keras")
        if self._loaded[0] != path:
            self._loaded = (path, load_model(path))
        return self._loaded[1]
