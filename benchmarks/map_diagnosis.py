"""Why the trained map is flat (#36, section 1): three measurements.

1. **Which terms push the map up.** The attention map is
   `sigmoid(gamma * z_hat + beta)` (`attention_map_bn`, then a sigmoid):
   `beta` raises or lowers the whole map, `gamma` sets its contrast. For
   each weighted term of the two updates (eq. 5's and the complement
   step's), on fixed training batches in training mode (batch statistics, as
   in the step), the term's gradient with respect to `beta` and `gamma`:
   `-dL/dbeta > 0` means the term pushes the whole map up, `-dL/dgamma > 0`
   that it sharpens it. Per model: the pre-trained ABN, the proposed model
   as it starts (the ABN's weights, no bypass), and each trained run given.
2. **Was the map already flat in the ABN?** Map statistics of each model on
   the validation split: the map's mean, its spread within an image, the
   fraction above 0.5, entropy.
3. **What batch norm after `A * F` does to a constant map.** The
   perception branch's logits with `A` replaced by a constant `c`, against
   `c = 1`, in training mode (batch statistics) and in inference mode
   (moving statistics): the largest change of any logit.

Example (TensorFlow, about 1 min):

    python benchmarks/map_diagnosis.py --abn RUN/seed0-abn-pretrained \\
        --runs RUN/seed0-paper RUN/seed0-area --output benchmarks/results/maps_diagnosis
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def term_pushes(model, batches):
    """Mean over batches of `-dL/dbeta`, `-dL/dgamma` per weighted term."""
    from keras_amb.layers.batch_normalization import frozen_statistics
    from keras_amb.models import gradients

    bn = model.attention_branch.map_bn
    variables = [bn.beta, bn.gamma]
    steps = ["main"] + (["complement"] if model.has_complement_step else [])
    totals = {}
    for x, y in batches:
        for step in steps:
            method = model.main_step_loss if step == "main" else model.complement_step_loss
            for name in model.objective.weights(step):
                def term(method=method, name=name):
                    with frozen_statistics():
                        return method(x, y, training=True).terms[name]

                grads = gradients.variable_gradients(term, variables)
                beta, gamma = (-float(_numpy(g).sum()) for g in grads)
                entry = totals.setdefault(name, [0.0, 0.0, 0])
                entry[0] += beta
                entry[1] += gamma
                entry[2] += 1
    return {name: {"push_up": b / n, "sharpen": g / n} for name, (b, g, n) in totals.items()}


def map_statistics(model, batches):
    import numpy as np

    from keras_amb.explain import metrics

    maps = np.concatenate([_numpy(model(x)["attention"]) for x, _ in batches])
    flat = maps.reshape(len(maps), -1)
    shape = metrics.map_statistics(maps)
    bn = model.attention_branch.map_bn
    return {
        "mean": float(flat.mean()),
        "spread_within_image": float(flat.std(axis=1).mean()),
        "area_above_half": float(shape["map_area_above_half"].mean()),
        "entropy": float(shape["map_entropy"].mean()),
        "map_bn_gamma": float(_numpy(bn.gamma)[0]),
        "map_bn_beta": float(_numpy(bn.beta)[0]),
    }


def constant_map_effect(model, batches, constants=(0.05, 0.2, 0.5, 0.9)):
    """Largest |logit change| when A := c against A := 1, per mode."""
    import numpy as np
    from keras_amb.layers.batch_normalization import frozen_statistics

    out = {}
    for mode, training in (("training (batch statistics)", True),
                           ("inference (moving statistics)", False)):
        worst = {}
        for x, _ in batches:
            features = model.forward_features(x, training=False)
            n, h, w = features.shape[0], features.shape[1], features.shape[2]

            def logits(c):
                with frozen_statistics():
                    head = model.forward_head(features, np.full((n, h, w), c, "float32"),
                                              training=training)
                return _numpy(head["logits"])

            reference = logits(1.0)
            scale = float(np.abs(reference).mean())
            for c in constants:
                change = float(np.abs(logits(c) - reference).max())
                worst[str(c)] = max(worst.get(str(c), 0.0), change)
        out[mode] = {"largest_logit_change": worst, "mean_abs_logit": scale}
    return out


def _numpy(x):
    import keras
    import numpy as np

    return np.asarray(keras.ops.convert_to_numpy(x))


def starting_model(abn, reference_run):
    """The proposed model as its training starts: the reference run's
    arguments, the ABN's weights, PC's centers at the class means."""
    from keras_amb.app import runs
    from keras_amb.models import AttentionMiningNetwork

    config = runs.Run.open(reference_run).load_model().get_config()
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    config.update(area_weight=0.0, smoothness_weight=0.0, erasing_weight=0.0,
                  map_normalization="none")
    model = AttentionMiningNetwork.from_config(config)
    model.transfer_weights_from(abn)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--abn", required=True, help="The pre-trained ABN's run folder.")
    parser.add_argument("--runs", nargs="*", default=[], help="Trained proposed runs.")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--output", help="Write <output>.md and <output>.json.")
    args = parser.parse_args(argv)

    import dataclasses

    from keras_amb.app import config as amb_config
    from keras_amb.app import runs
    from keras_amb.data import pipeline
    from keras_amb.data import sources

    abn_run = runs.Run.open(args.abn)
    abn = abn_run.load_model()
    cfg = amb_config.as_run_config(abn_run.config())
    source = sources.source_for_data(dataclasses.replace(cfg.data, skip_bad_images=True),
                                     progress=False)

    def take(split):
        data = pipeline.prepare(source.examples(split), cfg.data.image_size, 32,
                                training=False, resize_ratio=abn.resize_ratio)
        out = []
        for batch in data.take(args.batches):
            out.append((batch[0].numpy(), batch[1].numpy()))
        return out

    train, val = take("train"), take("val")
    models = {"pre-trained ABN": abn}
    if args.runs:
        start = starting_model(abn, args.runs[0])
        batches = pipeline.prepare(source.examples("train"), cfg.data.image_size, 32,
                                   training=False, resize_ratio=abn.resize_ratio)
        start.initialize_centers(batches)
        models["proposed model at its start (ABN weights, no bypass)"] = start
    for run in args.runs:
        model = runs.Run.open(run).load_model()
        models[f"{os.path.basename(run.rstrip('/'))}: {model.description}"] = model

    result = {}
    for name, model in models.items():
        result[name] = {
            "pushes": term_pushes(model, train),
            "map": map_statistics(model, val),
            "constant_map": constant_map_effect(model, val),
        }
        print(name, json.dumps(result[name], indent=1), flush=True)
    text = report(result, args)
    print(text)
    if args.output:
        with open(args.output + ".md", "w", encoding="utf-8") as f:
            f.write(text)
        with open(args.output + ".json", "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


def report(result, args):
    command = "python benchmarks/map_diagnosis.py " + " ".join(sys.argv[1:])
    lines = ["# Why the map is flat: the diagnosis (#36, section 1)", "",
             f"Command: `{command}` ({args.batches} batches of 32 training images for the "
             "forces, as many validation batches for the map and the constant-map test).", "",
             "## 1. Which terms push the map up", "",
             "`-dL/dbeta` of the map's batch norm (> 0: the term raises the whole map) and "
             "`-dL/dgamma` (> 0: it sharpens the map), each term weighted as its update "
             "weights it, training mode.", "",
             "| model | term | push up (-dL/dbeta) | sharpen (-dL/dgamma) |", "|---|---|---|---|"]
    for name, r in result.items():
        for term, v in r["pushes"].items():
            lines.append(f"| {name} | {term} | {v['push_up']:+.4g} | {v['sharpen']:+.4g} |")
    lines += ["", "## 2. The map on the validation split", "",
              "| model | mean | spread within an image | area > 0.5 | entropy | gamma | beta |",
              "|---|---|---|---|---|---|---|"]
    for name, r in result.items():
        m = r["map"]
        lines.append(f"| {name} | {m['mean']:.3f} | {m['spread_within_image']:.3f} | "
                     f"{m['area_above_half']:.3f} | {m['entropy']:.3f} | "
                     f"{m['map_bn_gamma']:.3f} | {m['map_bn_beta']:.3f} |")
    lines += ["", "## 3. A constant map through the batch norms after `A * F`", "",
              "Largest change of any logit with `A := c` against `A := 1` (mean |logit| "
              "beside it).", "", "| model | mode | mean abs logit | " + " | ".join(
                  f"c = {c}" for c in next(iter(result.values()))["constant_map"][
                      "training (batch statistics)"]["largest_logit_change"]) + " |"]
    lines.append("|---|---|---|" + "---|" * 4)
    for name, r in result.items():
        for mode, v in r["constant_map"].items():
            cells = " | ".join(f"{x:.3g}" for x in v["largest_logit_change"].values())
            lines.append(f"| {name} | {mode} | {v['mean_abs_logit']:.3g} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
