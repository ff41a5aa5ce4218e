"""Run folders: what training writes, and the one way to open a run or model.

A run folder holds `config.yaml` (the resolved config), `labels.txt`,
`state.json` (stage and completed epochs, written after each checkpoint),
`history.csv`, `logs/` (TensorBoard), `checkpoints/` (`<stage>-last.keras`,
`<stage>-best.keras`), `abn.keras` (the pre-trained ABN), `model.keras` (the
final model) and `test_metrics.json`. `Run.open` accepts such a folder or a
bare `.keras` file; every command goes through it, so both give the same
class names and preprocessing.

A run folder has one owner of its layout: its files, its state
(`state.json`, read once and kept current), the lock that keeps one trainer
per folder (`run_lock.py`) and loading its model (safe mode, a clear error
naming the file).
"""

import copy
import datetime
import json
import os
import shutil
import stat

from keras_amb.app import run_files
from keras_amb.app import run_lock
from keras_amb.errors import RunError  # noqa: F401 (re-exported)
from keras_amb.files import atomic_write_text
from keras_amb.model_file import check_model_file  # noqa: F401 (re-exported)
from keras_amb.app.run_files import LOCK_FILE
from keras_amb.app.run_files import MODEL_FILES
from keras_amb.app.run_files import STATE_FILE

DEFAULT_ROOT = "saved_models"


def timestamp():
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def default_run_dir(dataset, architecture, root=DEFAULT_ROOT):
    name = os.path.basename(os.path.normpath(str(dataset))) or "data"
    return os.path.join(root, f"{name}-{architecture}-{timestamp()}")


def check_writable(directory, min_free_bytes=200 * 2**20):
    """Fails before training when the output folder cannot be made or
    written (`safety.check_output_folder`) or its disk is nearly full."""
    from keras_amb.app import safety

    safety.check_output_folder(directory, "--output")
    free = shutil.disk_usage(directory).free
    if free < min_free_bytes:
        raise RunError(
            f"Only {free / 2**20:.0f} MiB free where {directory} is; training "
            f"needs at least {min_free_bytes / 2**20:.0f} MiB for checkpoints."
        )


def load_model(path):
    """A keras-amb model from a `.keras` file, a run folder or a preset
    (a folder, or a hub handle such as `hf://user/name`: `keras_amb.presets`),
    loaded in Keras's safe mode (no code runs); a run folder gives its best
    available model with its class names and resize ratio
    (`Run.open(path).load_model()`, as every command does).

    Example:
    >>> model = keras_amb.load_model("saved_models/synthetic-mining-...")  # doctest: +SKIP
    """
    from keras_amb import presets

    path = presets.resolve_handle(path)
    if os.path.isdir(os.fspath(path)):
        return Run.open(path).load_model()
    import keras

    import keras_amb.optimizers  # noqa: F401  (registers the classes, as the next)
    from keras_amb.models import AttentionBranchNetwork

    check_model_file(path)
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else ""
        raise RunError(
            f"{path}: not a loadable keras-amb model ({error.__class__.__name__}: {reason})"
        ) from None
    if not isinstance(model, AttentionBranchNetwork):
        raise RunError(
            f"{path}: not a keras-amb model (it holds a {type(model).__name__})"
        )
    return model


class Run:
    """A training run: its folder, or a bare model file standing alone.

    `Run.open(path)` takes a run folder, a `.keras` file inside one, or a
    `.keras` file anywhere; `load_model()` gives the model with its class
    names and resize ratio (from the model's own config, or, for files of
    earlier releases, from the run folder); `resume()` continues an
    interrupted run. `initialise` writes a new run folder's files; `lock()`
    makes sure one process at a time trains in it.

    Args:
        run_dir: str or None, the run folder (None for a bare model file).
        model_path: str or None, the model file to use (None: the run's best
            available, see `MODEL_FILES`).
        source: str or None, what the user gave when it is not `model_path`
            (a preset folder, read through a temporary archive).

    Example:
    >>> run = Run.open("saved_models/synthetic-mining-20260101-120000")  # doctest: +SKIP
    >>> model = run.load_model()  # doctest: +SKIP
    >>> model.decode_predictions(model.predict(images)["probabilities"])  # doctest: +SKIP
    """

    def __init__(self, run_dir=None, model_path=None, source=None):
        self.run_dir = run_dir
        self._model_path = model_path
        self.source = source or run_dir or model_path
        # `state.json` as last read or written, with the file's signature
        # (mtime, size, inode) then: read again only when the file changed.
        self._state_cache = None

    # === Opening ===

    @classmethod
    def open(cls, path):
        """A `Run` for a run folder or a `.keras` file (raises `RunError`)."""
        from keras_amb import presets

        path = os.fspath(path)
        if presets.is_preset(path):  # a preset folder reads as its model file
            return cls(run_dir=None, model_path=presets.preset_archive(path), source=path)
        if os.path.isdir(path):
            if not (os.path.isfile(os.path.join(path, STATE_FILE))
                    or os.path.isfile(os.path.join(path, "config.yaml"))
                    or any(os.path.isfile(os.path.join(path, f)) for f in MODEL_FILES)):
                raise RunError(
                    f"{path}: not a keras-amb run folder (no state.json, config.yaml "
                    "or model.keras)"
                )
            return cls(run_dir=path)
        if os.path.isfile(path):
            parent = os.path.dirname(os.path.abspath(path))
            for candidate in (parent, os.path.dirname(parent)):
                if os.path.isfile(os.path.join(candidate, "config.yaml")):
                    return cls(run_dir=candidate, model_path=path)
            return cls(run_dir=None, model_path=path)
        raise RunError(f"No such run folder or model file: {path}")

    def initialise(self, config, class_names, stages):
        """Writes a new run's config (a `RunConfig`, as flat YAML), labels
        and initial state."""
        from keras_amb.app import config as amb_config

        amb_config.dump(config.to_dict(), self.path("config.yaml"))
        atomic_write_text(self.path("labels.txt"), "\n".join(class_names) + "\n")
        self.write_state({
            "stages": stages, "stage": stages[0], "stage_index": 0,
            "completed_epochs": 0, "best": {},
        })

    @property
    def name(self):
        if self.run_dir is not None:
            name = os.path.basename(os.path.normpath(self.run_dir))
            if self._model_path and os.path.basename(self._model_path) != "model.keras":
                name += f"/{os.path.relpath(self._model_path, self.run_dir)}"
            return name
        if self.source != self._model_path:  # a preset: its folder's name
            return os.path.basename(os.path.normpath(self.source))
        return os.path.basename(self._model_path)

    # === Files ===

    def path(self, *parts):
        if self.run_dir is None:
            raise RunError(f"{self._model_path} is a bare model file, not a run folder")
        return os.path.join(self.run_dir, *parts)

    def output_folder(self, name):
        """Where a command's output goes by default: `<run>/<name>` for a run
        folder, `<model file without .keras>-<name>` beside a bare file."""
        if self.run_dir is not None:
            return self.path(name)
        return os.path.splitext(self._model_path)[0] + f"-{name}"

    @property
    def model_path(self):
        """The model file: the one given, else the run's best available."""
        if self._model_path is not None:
            return self._model_path
        for candidate in MODEL_FILES:
            path = self.path(candidate)
            if os.path.isfile(path):
                return path
        raise RunError(
            f"{self.run_dir} holds no trained model yet (no model.keras); finish or "
            f"resume the run with `keras-amb train --resume {self.run_dir}`."
        )

    def check_model(self):
        """Refuses a model file that is not a keras-amb model
        (`check_model_file`), reading only its archive: the commands call it
        before Keras and TensorFlow load, so a wrong file is refused in a
        second rather than after 5-10 s of imports."""
        check_model_file(self.model_path)

    def config(self):
        """The run's resolved config (`{}` for a bare model file)."""
        from keras_amb.app import config as amb_config

        if self.run_dir is None or not os.path.isfile(self.path("config.yaml")):
            return {}
        return amb_config.load_yaml(self.path("config.yaml"))

    def labels(self):
        if self.run_dir is None or not os.path.isfile(self.path("labels.txt")):
            return None
        with open(self.path("labels.txt"), encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]

    def _state_signature(self):
        """`(mtime, size, inode)` of `state.json`, or None if it is not a file."""
        try:
            info = os.stat(self.path(STATE_FILE))
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def state(self):
        """The run's `state.json` (None if absent); `RunError` if damaged.

        Parsed once and then only again when the file changes (a copy is
        returned each time), so the per-epoch bookkeeping does not re-read
        it."""
        if self.run_dir is None:
            return None
        signature = self._state_signature()
        if signature is None:
            return None
        if self._state_cache is not None and self._state_cache[0] == signature:
            return copy.deepcopy(self._state_cache[1])
        path = self.path(STATE_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
        except PermissionError:
            raise RunError(f"{path}: permission denied") from None
        except (ValueError, UnicodeDecodeError) as error:
            raise RunError(f"{path}: damaged, not JSON ({error}); the run cannot be "
                           "resumed from it") from None
        if not isinstance(state, dict):
            raise RunError(f"{path}: damaged, must hold a JSON object, got "
                           f"{type(state).__name__}; the run cannot be resumed from it")
        self._state_cache = (signature, copy.deepcopy(state))
        return state

    def check_state(self):
        """The state, checked for what resuming needs (`RunError` if not)."""
        state = self.state()
        path = self.path(STATE_FILE)
        if state is None:
            raise RunError(f"{self.run_dir}: no state.json, so not a keras-amb run that "
                           "can be resumed")
        stages = state.get("stages")
        index, epochs = state.get("stage_index"), state.get("completed_epochs")
        if not (isinstance(stages, list) and stages and all(s in ("abn", "mining", "proposed")
                                                            for s in stages)):
            raise RunError(f"{path}: damaged, 'stages' must be a list of 'abn'/'mining', "
                           f"got {stages!r}")
        if not (isinstance(index, int) and 0 <= index <= len(stages)):
            raise RunError(f"{path}: damaged, 'stage_index' must be 0..{len(stages)}, "
                           f"got {index!r}")
        if not (isinstance(epochs, int) and epochs >= 0):
            raise RunError(f"{path}: damaged, 'completed_epochs' must be an integer >= 0, "
                           f"got {epochs!r}")
        return state

    def never_trained(self):
        """True if the run folder holds a run that has not finished one epoch
        (a failed or killed start): the next identical command may reuse it."""
        try:
            state = self.state()
        except RunError:
            return False
        if state is None:
            return False
        done = (state.get("stage_index"), state.get("completed_epochs"))
        checkpoints = self.path("checkpoints")
        return (done == (0, 0) and not state.get("finished")
                and not (os.path.isdir(checkpoints) and any(
                    not f.startswith(".") for f in os.listdir(checkpoints)))
                and not any(os.path.isfile(self.path(f)) for f in MODEL_FILES))

    def write_state(self, state):
        text = json.dumps(state, indent=2)
        atomic_write_text(self.path(STATE_FILE), text)
        # What a read would give (JSON turns tuples into lists, keys into str).
        self._state_cache = (self._state_signature(), json.loads(text))

    def update_state(self, **changes):
        state = self.state() or {}
        state.update(changes)
        self.write_state(state)
        return state

    def history(self):
        """The rows of `history.csv` (dicts of strings), oldest first."""
        import csv

        if self.run_dir is None or not os.path.isfile(self.path("history.csv")):
            return []
        with open(self.path("history.csv"), newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def files(self):
        """`(relative path, bytes)` of the run's files (logs/ summarised)."""
        if self.run_dir is None:
            return [(self._model_path, os.path.getsize(self._model_path))]
        return run_files.listing(self.run_dir)

    def protected_files(self):
        """The files a command reading this run must never overwrite: the
        model file and, in a run folder, the run's own files."""
        found = [self.model_path]
        if self.run_dir is not None:
            found += [self.path(f) for f in run_files.RUN_FILES + MODEL_FILES
                      if os.path.isfile(self.path(f))]
        return found

    def remove_run_files(self):
        """Removes the files of a run that never trained (`never_trained`),
        so it can start again; other files in the folder stay."""
        run_files.remove(self.run_dir, run_files.RUN_FILES)

    def discard(self, before):
        """Undoes a start that failed before its first epoch: removes what
        the start added to the folder (`before`: its entries before the
        start), or the whole folder if the start made it (`before` None)."""
        if before is None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            run_files.remove(self.run_dir, set(os.listdir(self.run_dir)) - set(before))

    # === The model ===

    def load_model(self):
        """The model, with its class names and resize ratio.

        Models trained by this release carry both in their config; for a file
        of an earlier release (no class names saved) they come from the run
        folder's `labels.txt` and `config.yaml`.
        """
        model = load_model(self.model_path)
        if model.class_names is None:
            labels = self.labels()
            if labels is not None and len(labels) == model.num_classes:
                model.class_names = labels
            ratio = self.config().get("resize_ratio")
            if ratio:
                from keras_amb.arguments import check_arguments

                try:
                    check_arguments(resize_ratio=ratio)
                except ValueError as error:
                    raise RunError(f"{self.path('config.yaml')}: {error}") from None
                model.resize_ratio = float(ratio)
        return model

    # === One trainer at a time ===

    def lock(self):
        """Holds the run's lock while training; refuses a second trainer
        (`run_lock.hold`: the kernel releases it when the holder exits)."""
        return run_lock.hold(self.run_dir, self.path(LOCK_FILE))


def newest_run(root=DEFAULT_ROOT):
    """The most recently written run under `root` that holds a model, or None."""
    if not os.path.isdir(root):
        return None
    found = []
    for entry in os.scandir(root):
        model = os.path.join(entry.path, "model.keras")
        if entry.is_dir() and os.path.isfile(model):
            found.append((os.path.getmtime(model), entry.path))
    return max(found)[1] if found else None
