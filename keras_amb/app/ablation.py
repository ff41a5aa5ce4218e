"""`keras-amb ablate`: the paper's Tables 1-4 on one dataset, over seeds.

Per seed: pre-train one ABN; from it, under the same budget (`epochs`),
train ABN (continued), the human-knowledge baseline (where the dataset has
masks), AMB, AMB+PC, AMB+COT, AMB+PC+COT, and AMB+PC+COT with the naive
batch-norm statistics (each with the paper's objective), the no-bypass model
without mining (the control), and keras-amb's default objective; evaluate
each on the test split. The statistics
(mean and std over seeds, the paired difference to ABN with its bootstrap
interval) and the report are `keras_amb/app/ablation_report.py`; its names are
importable from here too.
"""

import dataclasses
import json
import os

from keras_amb.app.ablation_report import BASELINE  # noqa: F401  (the names callers import from here)
from keras_amb.app.ablation_report import BOOTSTRAP_SAMPLES  # noqa: F401
from keras_amb.app.ablation_report import COLUMNS  # noqa: F401
from keras_amb.app.ablation_report import PAIRED  # noqa: F401
from keras_amb.app.ablation_report import PAPER  # noqa: F401
from keras_amb.app.ablation_report import paired_difference  # noqa: F401
from keras_amb.app.ablation_report import paper_comparison  # noqa: F401
from keras_amb.app.ablation_report import summarise
from keras_amb.app.ablation_report import write_report
from keras_amb.arguments import PAPER_OBJECTIVE
from keras_amb.files import atomic_write_text

# The paper's rows train the paper's objective whatever the config's map
# terms say; the last two rows are the no-bypass control without mining and
# keras-amb's default objective (METHOD.md, "The default objective").
_PAPER = dict(PAPER_OBJECTIVE, architecture="mining")
VARIANTS = (
    ("ABN", {"architecture": "abn"}),
    ("ABN + human-edited attention", {"architecture": "abn", "attention_targets": "masks"}),
    ("AMB", dict(_PAPER, amb=True, pc=False, cot=False)),
    ("AMB + PC", dict(_PAPER, amb=True, pc=True, cot=False)),
    ("AMB + COT", dict(_PAPER, amb=True, pc=False, cot=True)),
    ("AMB + PC + COT", dict(_PAPER, amb=True, pc=True, cot=True)),
    ("AMB + PC + COT, naive BN statistics", dict(
        _PAPER, amb=True, pc=True, cot=True, naive_bn_statistics=True)),
    ("No bypass, no mining", dict(_PAPER, amb=False, pc=False, cot=False)),
    ("AMB + PC + COT + area, map-only mining", dict(
        _PAPER, amb=True, pc=True, cot=True, area_weight=1.0, amb_gradient="attention")),
)


def variant_folder(name):
    """The run folder's name part of a variant (`"AMB + PC + COT"` ->
    `"amb-pc-cot"`); existing ablation roots use these names, so they stay
    (not `explain.visualize.slug`, which makes file names of row labels)."""
    return name.lower().replace(" + ", "-").replace(", ", "-").replace(" ", "-")


def run(config, seeds, root, split="test", limit=None, log=print, verbose=None):
    """The whole ablation as one call: what `keras-amb ablate` does.

    Trains (or resumes) every variant of `VARIANTS` for each seed under
    `root` from `config`, a `RunConfig` (`keras_amb.app.config.resolve`),
    evaluates each on `split` (the first `limit` images), and writes
    `ablation.md`, `ablation.json` and `ablation.png` there.

    Example:

    ```python
    from keras_amb.app import ablation, config
    cfg = config.resolve("synthetic_v2", {"epochs": 2, "pretrain_epochs": 2})
    table, text = ablation.run(cfg, seeds=1, root="saved_models/ablation-v2")
    ```

    Returns:
        `(table, text)`: `summarise`'s table and the markdown report.
    """
    import time

    from keras_amb.app import runs
    from keras_amb.app import trainer
    from keras_amb.data import sources
    from keras_amb.explain import evaluation

    start = time.time()
    runs.check_writable(root)
    source = sources.source_for_data(
        dataclasses.replace(config.data, skip_bad_images=True), progress=False)

    def train_fn(run_config, run_dir, resume):
        trainer.train(run_config, run_dir=run_dir, resume=resume, log=log, verbose=verbose)

    def evaluate_fn(run_dir):
        model = runs.Run.open(run_dir).load_model()
        return evaluation.evaluate(model, source, split, limit=limit, progress=False)

    results = ablate(config, range(seeds), root, "object_mask" in source.annotations,
                     evaluate_fn, train_fn, log=log)
    table = summarise(results)
    text = write_report(table, config, root, seconds=round(time.time() - start, 1))
    return table, text


def ablate(base_config, seeds, root, has_masks, evaluate_fn, train_fn, log=print,
           variants=VARIANTS):
    """Trains and evaluates every variant for each seed; returns the results.

    `base_config` is a `RunConfig`; each variant is `base_config.replace`d
    with its overrides (flat config keys).
    `train_fn(config, run_dir, resume)` trains (or resumes) a run;
    `evaluate_fn(run_dir)` returns its evaluation dict (with `per_image`).
    Finished runs are reused and interrupted ones resumed, and each
    evaluation is saved beside its run, so an interrupted ablation picks up
    where it stopped. Results: `{variant: [evaluation per seed]}`.
    """

    def ensure(run_config, run_dir):
        if os.path.isfile(os.path.join(run_dir, "model.keras")):
            return
        train_fn(run_config, run_dir, os.path.isfile(os.path.join(run_dir, "state.json")))

    def evaluated(run_dir):
        path = os.path.join(run_dir, "ablation-evaluation.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        result = evaluate_fn(run_dir)
        atomic_write_text(path, json.dumps(result))
        return result

    results = {}
    for seed in seeds:
        abn_dir = os.path.join(root, f"seed{seed}-abn-pretrained")
        config = base_config.replace(
            seed=seed, architecture="abn", epochs=base_config.schedule.pretrain_epochs,
            init_from=None, attention_targets=None)
        log(f"[seed {seed}] pre-trained ABN ({config.schedule.epochs} epochs): {abn_dir}")
        ensure(config, abn_dir)
        for name, overrides in variants:
            if overrides.get("attention_targets") and not has_masks:
                continue
            run_dir = os.path.join(root, f"seed{seed}-{variant_folder(name)}")
            config = base_config.replace(
                **{"seed": seed, "init_from": abn_dir, "attention_targets": None, **overrides})
            log(f"[seed {seed}] {name}: {config.schedule.epochs} epochs from the "
                "pre-trained ABN")
            ensure(config, run_dir)
            metrics = evaluated(run_dir)
            results.setdefault(name, []).append(metrics)
            log(f"[seed {seed}] {name}: top-1 {metrics['top1']:.4f}, score {metrics['score']:.3f}")
    return results
