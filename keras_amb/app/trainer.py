"""The paper's training procedure as a resumable run (used by `keras-amb train`).

Stage "abn": pre-train an ABN (with bypass). Stage "mining" ("proposed"
before 0.3): initialise the Attention Mining Network from it and train with eq. 5 + COT. Each stage checkpoints
every epoch; `train(..., resume=True)` continues a killed run from its last
completed epoch with both optimizers' state. One process at a time trains in
a run folder (`Run.lock`).

`_Training` is one run's life; its steps share the run, the data and the
log: start or resume a stage, set the PC centers, fit with the checkpoint
and history callbacks, hand the ABN to the proposed stage in memory, and
finish with the test metrics.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import sys

import keras
import numpy as np

from keras_amb.app import callbacks as amb_callbacks
from keras_amb import optimizers
from keras_amb.app import runs
from keras_amb.app import runtime
from keras_amb import schedules
from keras_amb.app.console import EpochSummary
from keras_amb.data import folder
from keras_amb.data import pipeline
from keras_amb.data import sources
from keras_amb.app.distribution import distribution_scope
from keras_amb.files import atomic_save_model
from keras_amb.files import atomic_write
from keras_amb.files import atomic_write_text
from keras_amb.models.factory import build_model


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    model_path: str
    test_metrics: dict


def stages_for(model, schedule):
    """The stages a run trains, from its model and schedule sections."""
    if model.architecture == "abn":
        return ["abn"]
    if model.init_from or schedule.pretrain_epochs == 0:
        return ["mining"]
    return ["abn", "mining"]


def stage_epochs(model, schedule, stage):
    if stage == "abn" and model.architecture != "abn":
        return schedule.pretrain_epochs
    return schedule.epochs


def train(config, run_dir=None, resume=False, verbose=None, log=None, restart_stage=False):
    """Runs (or resumes) a training run; returns a `TrainResult`.

    Args:
        config: a `RunConfig` (`keras_amb.app.config.resolve`), or a flat
            mapping as a run's `config.yaml` holds (checked the same way).
        run_dir: str, the run folder (default: a new one under saved_models/);
            with `resume`, also an opened `runs.Run`.
        resume: bool, continue the run in `run_dir` from its last epoch. A
            config that disagrees with the run's checkpoints is refused
            (`keras_amb.app.resume_check`).
        verbose: Keras `fit` verbosity; None (the default): one short line
            per epoch (`keras_amb.app.console`) and a progress bar on a terminal,
            one line per epoch otherwise).
        log: callable taking a line of text (default: print).
        restart_stage: bool, with `resume`: the current stage starts anew
            with the config as it is (its checkpoints are set aside).
    """
    from keras_amb.app import config as amb_config

    config = amb_config.as_run_config(config)
    log = log or _print
    if resume:
        run = run_dir if isinstance(run_dir, runs.Run) else runs.Run.open(run_dir)
        run_dir = run.run_dir
        state = run.check_state()
        if state.get("finished"):
            # Stops here: nothing is evaluated again, nothing is written.
            log(f"{run_dir} is already finished; nothing to resume (nothing changed).")
            return finished_result(run)
    # Created before any TensorFlow op: MultiWorkerMirroredStrategy must
    # configure its collectives at program start.
    scope = distribution_scope(log) if config.runtime.distribute else contextlib.nullcontext()
    created = None
    if not resume:
        run_dir = run_dir or runs.default_run_dir(config.data.dataset, config.model.architecture)
        run = runs.Run(run_dir)
        created = set(os.listdir(run_dir)) if os.path.isdir(run_dir) else None
        runs.check_writable(run_dir)
    owned = False
    try:
        with run.lock():
            if resume:
                run.check_state()
            elif run.state() is not None:
                if not run.never_trained():
                    raise runs.RunError(
                        f"{run_dir} already holds a run; use --resume {run_dir} or "
                        "another --output"
                    )
                log(f"{run_dir} holds a run that never finished an epoch; starting it again")
                run.remove_run_files()
            owned = not resume
            runtime.configure(config.runtime.seed, config.runtime.deterministic,
                              config.runtime.mixed_precision)
            source = sources.source_for_data(config.data)
            if source.skipped:
                log(f"Left out {len(source.skipped)} unreadable image(s) (--skip-bad-images):")
                for _, reason in source.skipped:
                    log(f"  {reason}")
            hidden = folder.hidden_class_dirs(config.data.dataset)
            if hidden:
                log(f"Skipped {len(hidden)} hidden folder(s) (names starting with '.' are "
                    f"not classes): {', '.join(hidden)}; {source.num_classes} classes: "
                    f"{', '.join(source.class_names)}")
            if resume:
                _check_resume(run, config, source, restart_stage, log)
            else:
                # Recorded, so every command preprocesses as training did.
                config = config.replace(
                    resize_ratio=config.data.resize_ratio or source.resize_ratio)
                run.initialise(config, source.class_names,
                               stages_for(config.model, config.schedule))
                # The backend that trained it (config.yaml says only what was
                # asked for: null is KERAS_BACKEND's, or TensorFlow).
                run.update_state(skipped_images=[p for p, _ in source.skipped],
                                 backend=keras.backend.backend())
            training = _Training(config, run, source, log, verbose)
            with scope:
                model = training.run_stages()
            return training.finish(model)
    except BaseException:
        # A run that never finished an epoch leaves nothing behind: the next
        # identical command starts afresh instead of being refused.
        try:
            untrained = run.state() is None or run.never_trained()
        except runs.RunError:
            untrained = False
        if owned and untrained:
            run.discard(created)
        raise


def _check_resume(run, config, source, restart, log):
    from keras_amb.app import resume_check

    stages = stages_for(config.model, config.schedule)
    ratio = config.data.resize_ratio or source.resize_ratio
    resume_check.check_agreement(run, config, stages, source.class_names, ratio,
                                 restarting=restart)
    if restart:
        aside = resume_check.restart_stage(run)
        state = run.state()
        stage = state["stages"][min(state["stage_index"], len(state["stages"]) - 1)]
        log(f"Restarting stage {stage!r} with the config as it is"
            + (f" (its checkpoints moved to {aside})" if aside else ""))


def finished_result(run):
    """The `TrainResult` of a finished run, read from its files."""
    path = run.path("test_metrics.json")
    metrics = {}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                metrics = json.load(f)
        except ValueError:
            metrics = {}
    return TrainResult(run_dir=run.run_dir, model_path=run.model_path,
                       test_metrics=metrics if isinstance(metrics, dict) else {})


def _print(message):
    print(message, flush=True)


class _Training:
    """One run's stages, from its state to its final model."""

    def __init__(self, config, run, source, log, verbose):
        self.config = config
        self.run = run
        self.source = source
        self.log = log
        # None: keras_amb's short epoch lines (`console.EpochSummary`);
        # a number: Keras's own (every logged value).
        self.verbose = verbose
        self.resize_ratio = config.data.resize_ratio or source.resize_ratio
        state = run.state()
        amb_callbacks.truncate_history(
            run.path("history.csv"), state["stages"], state["stage_index"],
            state["completed_epochs"],
        )
        log(
            f"Run {run.run_dir}: dataset {source.name} ({source.num_classes} classes, "
            f"{source.sizes.get('train')} train / {source.sizes.get('val')} val / "
            f"{source.sizes.get('test')} test), backbone {config.model.backbone} at "
            f"{config.data.image_size} px, stages: {' -> '.join(state['stages'])}, "
            f"backend {keras.backend.backend()}"
        )
        data = config.data
        size, batch = data.image_size, data.batch_size
        # Full training batches only (a shuffled remainder is seen next
        # epoch): a batch of one breaks batch normalisation, and PyTorch's
        # CPU convolution backward fails on it.
        train_size = source.sizes.get("train")
        targets = data.attention_targets
        self.train_ds = pipeline.prepare(
            sources.with_attention_targets(source, "train", targets), size, batch,
            training=True, crop_scale=tuple(data.crop_scale), flip=data.flip,
            seed=int(config.runtime.seed), cache=data.cache,
            drop_remainder=train_size is None or train_size >= batch,
        )
        self.val_ds = None
        if source.sizes.get("val") != 0:
            self.val_ds = pipeline.prepare(
                sources.with_attention_targets(source, "val", targets), size, batch,
                training=False, resize_ratio=self.resize_ratio, cache=data.cache,
            )
        self.preview = np.zeros((0,))
        count = config.runtime.attention_images
        if count > 0 and self.val_ds is not None:
            batch = next(iter(pipeline.prepare(
                source.examples("val"), size, count, training=False,
                resize_ratio=self.resize_ratio, keep_masks=True,
            )))
            self.preview = np.asarray(batch["images"])[:count]

    def run_stages(self):
        state = self.run.state()
        stages = state["stages"]
        model = None
        for index in range(state["stage_index"], len(stages)):
            stage = stages[index]
            completed = state["completed_epochs"] if index == state["stage_index"] else 0
            model, completed = self._start(stage, completed, previous=model)
            epochs = stage_epochs(self.config.model, self.config.schedule, stage)
            if completed < epochs:
                self._fit(model, stage, index, completed, epochs)
            final = "abn.keras" if stage == "abn" and index < len(stages) - 1 else "model.keras"
            atomic_save_model(model, self.run.path(final))
            if stage == "abn" and final == "model.keras":
                # The same model under its second name: copied, not saved again.
                saved = self.run.path(final)
                atomic_write(self.run.path("abn.keras"),
                             lambda tmp: shutil.copyfile(saved, tmp), suffix=".keras")
            state = self.run.update_state(
                stage_index=index + 1, completed_epochs=0,
                stage=stages[min(index + 1, len(stages) - 1)],
            )
        return model

    def _start(self, stage, completed, previous=None):
        """The stage's model: resumed from its last checkpoint, or new
        (initialised as the paper says); returns `(model, completed)`.
        `previous` is the model the stage before trained in this process: the
        proposed model copies its weights from it instead of reloading them
        from `abn.keras`."""
        config = self.config.model
        last = self.run.path("checkpoints", f"{stage}-last.keras")
        if completed > 0 and os.path.isfile(last):
            self.log(f"Resuming stage {stage!r} after epoch {completed} from {last}")
            return runs.load_model(last), completed
        # A stage is "abn" or "mining" ("proposed" in runs of 0.2 and
        # earlier, whose checkpoints keep that name).
        architecture = "abn" if stage == "abn" else "mining"
        model = build_model(
            config, architecture, self.source.class_names, self.config.data.image_size,
            resize_ratio=self.resize_ratio,
            attention_targets=self.config.data.attention_targets is not None,
        )
        init = config.init_from
        if stage == "abn" and init:
            path = runs.Run.open(init).model_path
            self.log(f"Fine-tuning the ABN from {path}")
            model.transfer_weights_from(runs.load_model(path))
        elif stage == "abn":
            copied = model.load_backbone_weights(config.weights)
            if copied:
                self.log(f"Loaded {config.weights} backbone weights ({copied} layers)")
        else:
            path = runs.Run.open(init).model_path if init else self.run.path("abn.keras")
            if previous is not None and init is None:
                self.log("Initialising the Attention Mining Network from the ABN just "
                         f"trained ({path})")
                model.transfer_weights_from(previous)
            elif os.path.isfile(path):
                self.log(f"Initialising the Attention Mining Network from {path}")
                model.transfer_weights_from(runs.load_model(path))
            elif init is None and "abn" in self.run.state()["stages"]:
                raise runs.RunError(f"{path} is missing; cannot start stage {stage!r}")
            if model.pc:
                self._initialize_centers(model)
        model.compile(
            optimizers.make_optimizer(self.config.schedule.optimizer),
            jit_compile=self.config.runtime.jit_compile,
        )
        return model, 0

    def _probe_batches(self):
        """The training split without augmentation (centers, force log)."""
        return pipeline.prepare(
            sources.with_attention_targets(self.source, "train",
                                           self.config.data.attention_targets),
            self.config.data.image_size, self.config.data.batch_size, training=False,
            resize_ratio=self.resize_ratio,
        )

    def _initialize_centers(self, model):
        """PC centers at the class means of the transferred model's features
        (METHOD.md, 'PC loss')."""
        found = model.initialize_centers(self._probe_batches())
        self.start_norms = found
        self.log(
            f"PC centers set to the class means of {found['images']} training images "
            f"(feature norms: perception {found['per_feature_norm']:.3g}, "
            f"attention {found['att_feature_norm']:.3g})"
        )

    def _fit(self, model, stage, index, completed, epochs):
        schedule = self.config.schedule
        base = float(schedule.optimizer["learning_rate"])
        checkpoint = amb_callbacks.EpochCheckpoint(self.run, stage, index)
        probe = next(iter(self._probe_batches().take(1)))
        callbacks = [
            keras.callbacks.LearningRateScheduler(
                lambda epoch, lr: schedules.learning_rate_at(
                    schedule.lr_schedule, base, epoch, epochs
                )
            ),
            amb_callbacks.StopOnNonFinite(stage, checkpoint_path=checkpoint.last_path),
            amb_callbacks.MapGradientNorms(probe),
            amb_callbacks.MapShapeWarning(probe, self.log),
            checkpoint,
            keras.callbacks.TensorBoard(self.run.path("logs", stage)),
        ]
        if model.pc:
            callbacks.insert(-2, amb_callbacks.FeatureCollapseWarning(
                self.log, getattr(self, "start_norms", None)
            ))
        if len(self.preview):
            callbacks.append(amb_callbacks.AttentionImages(
                self.run.path("logs", stage, "attention"), self.preview, stage
            ))
        self.log(f"Stage {stage!r}: epochs {completed + 1}-{epochs} "
                 f"({type(model).__name__}: {model.description})")
        if self.verbose is None:
            callbacks.append(EpochSummary(self.log, stage, epochs, progress=sys.stdout.isatty()))
        model.fit(
            self.train_ds, validation_data=self.val_ds, initial_epoch=completed,
            epochs=epochs, callbacks=callbacks, verbose=self.verbose or 0, shuffle=False,
        )

    def finish(self, model):
        if model is None:
            model = runs.load_model(self.run.path("model.keras"))
        if self.source.sizes.get("test") == 0:
            self.log("The test split is empty; no test metrics.")
            metrics = {}
        else:
            test_ds = pipeline.prepare(
                self.source.examples("test"), self.config.data.image_size,
                self.config.data.batch_size, training=False, resize_ratio=self.resize_ratio,
            )
            metrics = model.evaluate(test_ds, verbose=0, return_dict=True)
            metrics = {k: float(v) for k, v in metrics.items()}
        atomic_write_text(self.run.path("test_metrics.json"), json.dumps(metrics, indent=2))
        self.run.update_state(finished=True)
        return TrainResult(
            run_dir=self.run.run_dir, model_path=self.run.path("model.keras"),
            test_metrics=metrics,
        )


def resume(run_dir, log=None, verbose=None, restart_stage=False):
    """Continues the run in `run_dir` (a run folder, a file inside one, or an
    opened `runs.Run`) from its last completed epoch with its saved config:
    what `keras-amb train --resume` does (`restart_stage`: `--restart-stage`).
    Returns a `TrainResult`."""
    from keras_amb.app import config as amb_config

    run = run_dir if isinstance(run_dir, runs.Run) else runs.Run.open(run_dir)
    config = amb_config.resolve(run.path("config.yaml"))
    return train(config, run_dir=run, resume=True, log=log, verbose=verbose,
                 restart_stage=restart_stage)
