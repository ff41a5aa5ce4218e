"""Where the quickstart's time goes.

Runs what `keras-amb train --dataset synthetic` runs (the bundled
`synthetic` config, in this process) and times its parts: the imports, the
set-up before the first epoch (data, pipelines, model), each stage's `fit`,
and inside it the validation passes and each callback's hooks; the rest of a
`fit` is the training steps and Keras's own loop. Prints one table.

    KERAS_BACKEND=tensorflow python benchmarks/fit_breakdown.py --output /tmp/breakdown
    python benchmarks/fit_breakdown.py --output /tmp/b --set pretrain_epochs=2 --set epochs=2

Compare variants in alternating fresh processes (the README's rule for CPU
numbers); `--set` takes config keys as `keras-amb train --set` does.
"""

import argparse
import collections
import os
import shutil
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="run folder (replaced)")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE", help="a config key, as for keras-amb train")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    import keras

    from keras_amb import callbacks as amb_callbacks
    from keras_amb import config as amb_config
    from keras_amb import trainer
    from keras_amb.models import AttentionBranchNetwork

    imports = time.perf_counter() - start
    spent = collections.defaultdict(float)
    calls = collections.Counter()

    in_fit = [False]

    def timed(cls, method, label):
        original = getattr(cls, method)

        def wrapper(self, *a, **k):
            name = label(in_fit[0]) if callable(label) else label
            began = time.perf_counter()
            if method == "fit":
                in_fit[0] = True
            try:
                return original(self, *a, **k)
            finally:
                if method == "fit":
                    in_fit[0] = False
                spent[name] += time.perf_counter() - began
                calls[name] += 1

        setattr(cls, method, wrapper)

    for cls in (amb_callbacks.EpochCheckpoint, amb_callbacks.MapGradientNorms,
                amb_callbacks.AttentionImages, amb_callbacks.StopOnNonFinite,
                amb_callbacks.FeatureCollapseWarning, keras.callbacks.TensorBoard,
                keras.callbacks.LearningRateScheduler):
        for method in ("on_epoch_begin", "on_epoch_end", "on_train_batch_end"):
            if method in vars(cls):
                timed(cls, method, f"hook {cls.__name__}.{method}")
    timed(AttentionBranchNetwork, "fit", "fit")
    timed(AttentionBranchNetwork, "evaluate",
          lambda inside: "validation (evaluate in fit)" if inside else "test split (evaluate)")
    timed(AttentionBranchNetwork, "initialize_centers", "PC centers (initialize_centers)")

    marks = []

    def log(line):
        marks.append((time.perf_counter() - start, line))
        print(f"[{marks[-1][0]:7.1f} s] {line}", flush=True)

    if os.path.isdir(args.output):
        shutil.rmtree(args.output)
    config = amb_config.resolve(None, {"dataset": "synthetic"}, args.assignments)
    result = trainer.train(config, run_dir=args.output, log=log, verbose=2)
    total = time.perf_counter() - start
    first_epoch = next((t for t, line in marks if line.startswith("Stage ")), total)
    in_fit_parts = sum(v for k, v in spent.items()
                       if k.startswith("hook ") or k.startswith("validation"))
    rows = [
        ("imports (keras, keras_amb)", imports, 1),
        ("set-up before the first epoch (data, pipelines, model)", first_epoch - imports, 1),
        ("fit minus validation and hooks: the training steps, Keras's loop",
         spent["fit"] - in_fit_parts, calls["fit"]),
    ]
    rows += [(k, v, calls[k]) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])
             if k != "fit"]
    listed = sum(v for _, v, _ in rows)
    rows.append(("the rest (between stages, saving, reporting)", total - listed, 1))
    rows.append(("total wall", total, 1))
    print(f"\nbackend {keras.backend.backend()}, test top-1 "
          f"{result.test_metrics.get('top1', float('nan')):.4f}, epochs "
          f"{config.schedule.pretrain_epochs} + {config.schedule.epochs}")
    print("| part | seconds | calls |\n|---|---|---|")
    for name, seconds, count in rows:
        print(f"| {name} | {seconds:.1f} | {count} |")


if __name__ == "__main__":
    main()
