"""The paper's training procedure as a resumable run (used by `keras-amb train`).

Stage "abn": pre-train an ABN (with bypass). Stage "proposed": initialise the
proposed model from it and train with eq. 5 + COT. Each stage checkpoints
every epoch; `train(..., resume=True)` continues a killed run from its last
completed epoch with both optimizers' state.
"""

import dataclasses
import json
import math
import os
import sys

import keras
import numpy as np

from keras_amb import callbacks as amb_callbacks
from keras_amb import config as amb_config
from keras_amb import runs
from keras_amb.data import pipeline
from keras_amb.data import sources
from keras_amb.models import AttentionBranchNetwork
from keras_amb.models import AttentionMiningNetwork


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    model_path: str
    test_metrics: dict


def stages_for(config):
    if config["model"] == "abn":
        return ["abn"]
    if config["init_from"] or config["pretrain_epochs"] == 0:
        return ["proposed"]
    return ["abn", "proposed"]


def stage_epochs(config, stage):
    if stage == "abn" and config["model"] == "proposed":
        return config["pretrain_epochs"]
    return config["epochs"]


def make_optimizer(config):
    spec = dict(config["optimizer"])
    name = spec.pop("name")
    lr = float(spec.pop("learning_rate"))
    wd = spec.pop("weight_decay", None)
    if name == "sgd":
        return keras.optimizers.SGD(
            lr, momentum=spec.get("momentum", 0.9), nesterov=spec.get("nesterov", False),
            weight_decay=wd,
        )
    if name == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    return keras.optimizers.AdamW(lr, weight_decay=wd if wd is not None else 0.004)


def learning_rate_at(config, epoch, epochs):
    """The schedule, by epoch index within a stage (resumable by design)."""
    base = float(config["optimizer"]["learning_rate"])
    schedule = config["lr_schedule"]
    if schedule["name"] == "constant":
        return base
    if schedule["name"] == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    milestones = [max(1, int(m * epochs)) for m in schedule.get("milestones", [])]
    passed = sum(epoch >= m for m in milestones)
    return base * schedule.get("gamma", 0.1) ** passed


def build_model(config, stage, num_classes):
    common = dict(
        num_classes=num_classes,
        backbone=config["backbone"],
        image_size=config["image_size"],
        mask_threshold=config["mask_threshold"],
        mask_slope=config["mask_slope"],
        hard_mask=config["hard_mask"],
        dropout=config["dropout"],
    )
    if stage == "abn":
        weight = config["attention_target_weight"] if config["attention_targets"] else 0.0
        return AttentionBranchNetwork(attention_target_weight=weight, **common)
    return AttentionMiningNetwork(
        mining=config["amb"],
        prototype_conformity=config["pc"],
        complement_objective=config["cot"],
        mining_weight=config["mining_weight"],
        pc_weight=config["pc_weight"],
        pc_contrastive_weight=config["pc_contrastive_weight"],
        center_lr_multiplier=config["center_lr_multiplier"],
        **common,
    )


def distribution_scope(config):
    """The data-parallel context of `--distribute`, by backend.

    TensorFlow: `MultiWorkerMirroredStrategy` when `TF_CONFIG` names a
    cluster, else `MirroredStrategy` over the local GPUs (or logical CPUs).
    JAX: `keras.distribution.DataParallel` over every device (several hosts
    once `jax.distributed.initialize()` has run). The batch size is global,
    split across devices; the learning rate is not rescaled.
    """
    import contextlib

    if not config.get("distribute"):
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if os.environ.get("TF_CONFIG"):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            strategy = tf.distribute.MirroredStrategy()
        _log(f"Data-parallel on {strategy.num_replicas_in_sync} replica(s) "
             f"({type(strategy).__name__})")
        return strategy.scope()
    if backend == "jax":
        if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
            # Several hosts: Keras reads the job addresses, the number of
            # processes and this process's id from KERAS_DISTRIBUTION_*.
            keras.distribution.initialize()
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        _log(f"Data-parallel on {len(devices)} JAX device(s) (keras.distribution.DataParallel)")
        return contextlib.nullcontext()
    raise amb_config.ConfigError(
        "--distribute uses TensorFlow's strategies or JAX's DataParallel; "
        f"the {backend} backend is not supported"
    )


def load_model(path):
    """Loads a keras-amb model file in Keras's safe mode."""
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:
        raise runs.RunError(
            f"{path}: not a loadable keras-amb model ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})"
        ) from None


def _log(message):
    print(message, flush=True)


def _setup_determinism(config):
    keras.utils.set_random_seed(int(config["seed"]))
    if config["deterministic"] and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _examples_with_targets(source, split, config):
    examples = source.examples(split)
    if config["attention_targets"] == "masks":
        if "object_mask" not in source.annotations:
            raise amb_config.ConfigError(
                f"--attention-targets masks: dataset {source.name!r} has no masks"
            )
        key = "part_mask" if "part_mask" in source.annotations else "object_mask"

        def add(example):
            example = dict(example)
            example["attention_target"] = example[key]
            return example

        examples = examples.map(add)
    return examples


def train(config, run_dir=None, resume=False, verbose=None):
    """Runs (or resumes) a training run; returns a `TrainResult`."""
    if resume:
        state = runs.read_state(run_dir)
        if state is None:
            raise runs.RunError(
                f"{run_dir}: no state.json, so not a keras-amb run that can be resumed"
            )
        if state.get("finished"):
            _log(f"{run_dir} is already finished; nothing to resume.")
    else:
        run_dir = run_dir or runs.default_run_dir(config["dataset"], config["model"])
        if os.path.exists(os.path.join(run_dir, runs.STATE_FILE)):
            raise runs.RunError(
                f"{run_dir} already holds a run; use --resume {run_dir} or another --output"
            )
        runs.check_writable(run_dir)
        state = None
    _setup_determinism(config)
    if config.get("mixed_precision"):
        keras.mixed_precision.set_global_policy(config["mixed_precision"])
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2

    targets = config["attention_targets"]
    if targets not in (None, "masks") and not os.path.isdir(str(targets)):
        raise amb_config.ConfigError(
            f"attention_targets must be 'masks' or a folder of edited maps; "
            f"{targets!r} is neither"
        )
    source = sources.load_source(
        config["dataset"],
        data_dir=config["data_dir"],
        skip_bad_images=config["skip_bad_images"],
        synthetic_params=config["synthetic"],
        attention_targets_dir=targets if targets not in (None, "masks") else None,
    )
    if source.skipped:
        _log(f"Left out {len(source.skipped)} unreadable image(s) (--skip-bad-images):")
        for _, reason in source.skipped:
            _log(f"  {reason}")
    stages = stages_for(config)
    if state is None:
        # Recorded, so visualize, evaluate and export preprocess as training did.
        config["resize_ratio"] = config["resize_ratio"] or source.resize_ratio
        amb_config.dump(config, os.path.join(run_dir, "config.yaml"))
        runs.atomic_write_text(
            os.path.join(run_dir, "labels.txt"), "\n".join(source.class_names) + "\n"
        )
        state = {
            "stages": stages, "stage": stages[0], "stage_index": 0,
            "completed_epochs": 0, "best": {},
            "skipped_images": [p for p, _ in source.skipped],
        }
        runs.write_state(run_dir, state)
    else:
        stages = state["stages"]
        amb_callbacks.truncate_history(
            os.path.join(run_dir, "history.csv"), stages,
            state["stage_index"], state["completed_epochs"],
        )
    _log(
        f"Run {run_dir}: dataset {source.name} ({source.num_classes} classes, "
        f"{source.sizes.get('train')} train / {source.sizes.get('val')} val / "
        f"{source.sizes.get('test')} test), backbone {config['backbone']} at "
        f"{config['image_size']} px, stages: {' -> '.join(stages)}, "
        f"backend {keras.backend.backend()}"
    )

    resize_ratio = config["resize_ratio"] or source.resize_ratio
    common = dict(image_size=config["image_size"], batch_size=config["batch_size"])
    # Full training batches only (a shuffled remainder is seen next epoch):
    # a batch of one breaks batch normalisation, and PyTorch's CPU
    # convolution backward fails on it.
    train_size = source.sizes.get("train")
    train_ds = pipeline.prepare(
        _examples_with_targets(source, "train", config), training=True,
        crop_scale=tuple(config["crop_scale"]), seed=int(config["seed"]),
        cache=config["cache"], drop_remainder=train_size is None or train_size >= config["batch_size"],
        **common,
    )
    val_ds = pipeline.prepare(
        _examples_with_targets(source, "val", config), training=False,
        resize_ratio=resize_ratio, cache=config["cache"], **common,
    )
    preview = np.zeros((0,))
    if config["attention_images"] > 0 and source.sizes.get("val") != 0:
        preview = next(iter(pipeline.prepare(
            source.examples("val"), training=False, resize_ratio=resize_ratio,
            image_size=config["image_size"], batch_size=config["attention_images"],
            keep_masks=True,
        )))["images"]
        preview = np.asarray(preview)[: config["attention_images"]]

    with distribution_scope(config):
        model = _run_stages(config, run_dir, state, stages, source, train_ds, val_ds, preview, verbose)
    return _finish(run_dir, source, model, resize_ratio, common)


def _run_stages(config, run_dir, state, stages, source, train_ds, val_ds, preview, verbose):
    model = None
    for index in range(state["stage_index"], len(stages)):
        stage = stages[index]
        epochs = stage_epochs(config, stage)
        completed = state["completed_epochs"] if index == state["stage_index"] else 0
        last_path = os.path.join(run_dir, "checkpoints", f"{stage}-last.keras")
        if completed > 0 and os.path.isfile(last_path):
            _log(f"Resuming stage {stage!r} after epoch {completed} from {last_path}")
            model = load_model(last_path)
        else:
            completed = 0
            model = build_model(config, stage, source.num_classes)
            if stage == "abn" and config["init_from"]:
                source_path = runs.find_model_file(config["init_from"])
                _log(f"Fine-tuning the ABN from {source_path}")
                model.transfer_weights_from(load_model(source_path))
            elif stage == "abn":
                copied = model.load_backbone_weights(config["weights"])
                if copied:
                    _log(f"Loaded {config['weights']} backbone weights ({copied} layers)")
            else:
                init = config["init_from"]
                abn_path = (
                    runs.find_model_file(init) if init
                    else os.path.join(run_dir, "abn.keras")
                )
                if os.path.isfile(abn_path):
                    _log(f"Initialising the proposed model from {abn_path}")
                    model.transfer_weights_from(load_model(abn_path))
                elif init is None and "abn" in stages:
                    raise runs.RunError(f"{abn_path} is missing; cannot start stage 'proposed'")
            model.compile(make_optimizer(config), jit_compile=config["jit_compile"])
        if completed < epochs:
            checkpoint = amb_callbacks.EpochCheckpoint(run_dir, stage, index)
            callback_list = [
                keras.callbacks.LearningRateScheduler(
                    lambda epoch, lr, n=epochs: learning_rate_at(config, epoch, n)
                ),
                amb_callbacks.StopOnNonFinite(stage, checkpoint_path=last_path),
                checkpoint,
                keras.callbacks.TensorBoard(os.path.join(run_dir, "logs", stage)),
            ]
            if len(preview):
                callback_list.append(amb_callbacks.AttentionImages(
                    os.path.join(run_dir, "logs", stage, "attention"), preview, stage
                ))
            _log(f"Stage {stage!r}: epochs {completed + 1}-{epochs} "
                 f"({type(model).__name__}, {describe(model)})")
            model.fit(
                train_ds, validation_data=val_ds if source.sizes.get("val") != 0 else None,
                initial_epoch=completed,
                epochs=epochs, callbacks=callback_list, verbose=verbose,
                shuffle=False,
            )
            state = runs.read_state(run_dir)
        final_name = "abn.keras" if stage == "abn" and index < len(stages) - 1 else "model.keras"
        runs.atomic_save_model(model, os.path.join(run_dir, final_name))
        if stage == "abn" and final_name == "model.keras":
            runs.atomic_save_model(model, os.path.join(run_dir, "abn.keras"))
        state.update({"stage_index": index + 1, "completed_epochs": 0})
        if index + 1 < len(stages):
            state["stage"] = stages[index + 1]
        runs.write_state(run_dir, state)
    return model


def _finish(run_dir, source, model, resize_ratio, common):
    state = runs.read_state(run_dir)
    model_path = os.path.join(run_dir, "model.keras")
    if model is None:
        model = load_model(model_path)
    test_ds = pipeline.prepare(
        source.examples("test"), training=False, resize_ratio=resize_ratio, **common
    )
    if source.sizes.get("test") == 0:
        _log("The test split is empty; no test metrics.")
        metrics = {}
    else:
        metrics = model.evaluate(test_ds, verbose=0, return_dict=True)
        metrics = {k: float(v) for k, v in metrics.items()}
    runs.atomic_write_text(
        os.path.join(run_dir, "test_metrics.json"), json.dumps(metrics, indent=2)
    )
    state["finished"] = True
    runs.write_state(run_dir, state)
    return TrainResult(run_dir=run_dir, model_path=model_path, test_metrics=metrics)


def run_resize_ratio(run_dir):
    """The test-time resize ratio a run was evaluated with (1.0 if unknown)."""
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        return 1.0
    return float(amb_config.load_yaml(path).get("resize_ratio") or 1.0)


def describe(model):
    parts = ["bypass" if model.bypass else "no bypass"]
    if model.mining:
        parts.append("AMB")
    if model.prototype_conformity:
        parts.append("PC")
    if model.complement_objective:
        parts.append("COT")
    if model.attention_target_weight > 0:
        parts.append("attention targets")
    return " + ".join(parts)
