"""`keras-amb evaluate`: accuracy, faithfulness and localisation on a split.

`evaluate_methods` is one pass over the split for every method: the
accuracy, the occlusions and each method's curves, localisation and
interventions are computed batch by batch in one loop; the metrics
themselves are `explain/metrics.py`'s.
"""

import os

import numpy as np

from keras_amb.data import pipeline
from keras_amb.files import atomic_write
from keras_amb.names import for_terminal
from keras_amb.explain import maps as explain_maps
from keras_amb.explain import metrics

# What replaces the attention map A in the intervention test: a uniform map at
# A's mean, another image's map (the batch rolled by one), 1 - A, and the
# object's mask (where the dataset has one), and 1 - A moved back to A's own
# mean and spread.
INTERVENTIONS = ("uniform", "shuffled", "inverted", "object", "inverted_matched")

# Per-image values kept for paired comparisons (`keras_amb.app.ablation`).
PER_IMAGE = (
    "top1", "top5", "att_top1", "insertion", "deletion", "score", "rise_insertion",
    "rise_deletion", "rise_score", "pointing_game", "energy_inside", "pointing_game_part",
    "energy_inside_part", "energy_inside_normalised", "energy_inside_part_normalised",
    "energy_part1", "energy_part2", "coverage_both_parts",
    "top1_occluded_part1", "top1_occluded_part2", "density_part1", "density_part2",
    "map_entropy", "map_area_above_half", "map_concentration",
    "map_entropy_normalised", "map_area_above_half_normalised",
    "logp_occluded_part1", "logp_occluded_part2", "density_other_occluded_part1",
    "density_other_occluded_part2",
) + tuple(f"top1_attention_{name}" for name in INTERVENTIONS)
SUMMARY_KEYS = (
    "top1", "top5", "att_top1", "insertion", "deletion", "score", "rise_insertion",
    "rise_deletion", "rise_score", "pointing_game", "energy_inside", "iou",
    "pointing_game_part", "energy_inside_part", "iou_part", "energy_inside_normalised",
    "energy_inside_part_normalised", "energy_part1",
    "energy_part2", "coverage_both_parts", "top1_occluded_part1", "top1_occluded_part2",
    "density_part1", "density_part2", "map_entropy", "map_area_above_half",
    "map_concentration", "map_entropy_normalised", "map_area_above_half_normalised",
    "logp_occluded_part1", "logp_occluded_part2", "density_other_occluded_part1",
    "density_other_occluded_part2",
) + tuple(f"top1_attention_{name}" for name in INTERVENTIONS) + (
    "examples", "method", "params",
)


def _nanmean(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def evaluate(
    model,
    source,
    split="test",
    batch_size=32,
    method="attention",
    limit=None,
    thresholds=metrics.DEFAULT_THRESHOLDS,
    rise_steps=metrics.DEFAULT_RISE_STEPS,
    progress=True,
):
    """Evaluates a model on a dataset split; returns a dict of results.

    Images are preprocessed with the model's own input size and resize ratio.
    Keys: `top1`, `top5`, `att_top1`, `insertion`, `deletion`, `score`
    (paper's threshold sweep), `rise_insertion`, `rise_deletion`,
    `rise_score`, `pointing_game`, `energy_inside`, `iou` (against the
    object mask or box; None where the dataset has none),
    `energy_inside_normalised` (the same energy on the map min-max
    normalised per image, the scale CAM and Grad-CAM come in, so that a
    raw attention map's floor does not count against it), `*_part` against
    the synthetic discriminative parts, and where the dataset has two part
    masks (synthetic version 2): `energy_part1`, `energy_part2` (fraction of
    the map's mass in each part), `coverage_both_parts` (fraction of images
    with both parts covered, `metrics.part_coverage`) and
    `top1_occluded_part1`, `top1_occluded_part2` (top-1 with that part
    painted over in the body's texture, on copies without distractors),
    `logp_occluded_part1/2` (the true class's log-probability there),
    `density_other_occluded_part1/2` (the attention map's density on the
    other part there), `density_part1`, `density_part2`
    (each part's mass density relative to the image's). Map statistics
    (`metrics.map_statistics`): `map_entropy`, `map_area_above_half`,
    `map_concentration`. The intervention test (`INTERVENTIONS`):
    `top1_attention_uniform`, `_shuffled`, `_inverted`, `_object` (top-1
    with the attention map replaced, `intervention_top1`). `per_image` holds each image's
    values, `curves` the mean curves and `params` the protocol's parameters.

    `evaluate_methods` gives the same for several map methods in one pass.
    """
    return evaluate_methods(
        model, source, split, batch_size, (method,), limit, thresholds, rise_steps, progress
    )[method]


def evaluate_methods(
    model,
    source,
    split="test",
    batch_size=32,
    methods=explain_maps.METHODS,
    limit=None,
    thresholds=metrics.DEFAULT_THRESHOLDS,
    rise_steps=metrics.DEFAULT_RISE_STEPS,
    progress=True,
):
    """`evaluate` for each of `methods`, in one pass over the split.

    Every batch is read, preprocessed and run forward once; the results that
    do not depend on the map (top-1/top-5, the attention branch's top-1, the
    intervention test, top-1 with a part hidden) are computed once and
    shared; the faithfulness curves, localisation and map statistics are
    computed per method.

    Returns:
        A dict, method to `evaluate`'s result for it.
    """
    import keras

    methods = tuple(methods)
    explain_maps.check_methods(methods)  # before any work, not at the first batch
    image_size = model.image_size
    resize_ratio = model.resize_ratio
    examples = source.examples(split)
    if limit:
        examples = examples.take(limit)
    batches = pipeline.prepare(
        examples, image_size, batch_size, training=False,
        resize_ratio=resize_ratio, keep_masks=True,
    )
    total = source.sizes.get(split)
    total = min(total, limit) if (total and limit) else (total or limit)
    import sys

    verbose = 1 if sys.stdout.isatty() else 2
    bar = keras.utils.Progbar(total, unit_name="image", verbose=verbose) if progress else None

    def predict(x):
        out = model.predict_on_batch(x.astype(np.float32))
        return np.asarray(keras.ops.convert_to_numpy(out["probabilities"]))

    k = min(5, model.num_classes)
    shared = {}  # per-image values that do not depend on the map
    per_method = {m: {} for m in methods}
    curves = {m: {"insertion": [], "deletion": [], "rise_insertion": [], "rise_deletion": []}
              for m in methods}
    iou = {m: {"": [], "_part": []} for m in methods}
    seen = 0
    ts = None

    def add(store, name, values):
        store.setdefault(name, []).append(np.asarray(values, dtype=np.float32))

    for batch in batches:
        images = batch["images"].numpy()
        labels = batch["labels"].numpy()
        outputs, explained = explain_maps.explain(model, images, methods)
        probs = outputs["probabilities"]
        topk = np.argsort(-probs, axis=-1)[:, :k]
        add(shared, "top1", topk[:, 0] == labels)
        add(shared, "top5", (topk == labels[:, None]).any(axis=1))
        add(shared, "att_top1", np.argmax(outputs["attention_probabilities"], -1) == labels)
        masks = batch["object_mask"].numpy() if "object_mask" in batch else None
        for name, values in intervention_top1(model, images, labels, outputs["attention"],
                                              masks).items():
            add(shared, name, values)
        part_masks = [batch[name].numpy() for name in source.part_names or ()]
        for each in methods:
            saliency, store = explained[each], per_method[each]
            ts, ins, dele = metrics.threshold_curves(predict, images, labels, saliency,
                                                     thresholds)
            r_ins, r_del = metrics.rise_curves(predict, images, saliency, rise_steps,
                                               target=topk[:, 0])
            for key, value in zip(curves[each], (ins, dele, r_ins, r_del)):
                curves[each][key].append(value)
            add(store, "insertion", metrics.auc(ins, ts))
            add(store, "deletion", metrics.auc(dele, ts))
            add(store, "rise_insertion", metrics.auc(r_ins))
            add(store, "rise_deletion", metrics.auc(r_del))
            for mask_key, suffix in (("object_mask", ""), ("part_mask", "_part")):
                if mask_key in batch:
                    p, e, i = metrics.localisation(saliency, batch[mask_key].numpy())
                    add(store, "pointing_game" + suffix, p)
                    add(store, "energy_inside" + suffix, e)
                    # The same on the map min-max normalised per image, the
                    # scale CAM and Grad-CAM are given in: no floor counts.
                    add(store, "energy_inside" + suffix + "_normalised",
                        metrics.localisation(explain_maps.normalise(saliency),
                                             batch[mask_key].numpy())[1])
                    iou[each][suffix].append(i)
            for name, values in metrics.map_statistics(saliency, masks).items():
                add(store, name, values)
            if part_masks:
                energies, covered = metrics.part_coverage(saliency, part_masks)
                densities = metrics.part_density(energies, part_masks)
                for number, (energy, density) in enumerate(zip(energies, densities), start=1):
                    add(store, f"energy_part{number}", energy)
                    add(store, f"density_part{number}", density)
                add(store, "coverage_both_parts", np.logical_and.reduce(covered))
        seen += len(labels)
        if bar is not None:
            bar.update(seen)
    if seen == 0:
        raise ValueError(f"split {split!r} of {source.name} has no examples")
    # Each part hidden, on distractor-free copies (not for a split that is
    # itself occluded): top-1, the true class's log-probability, and the
    # attention map's density on the part left.
    for part in (1, 2) if split in source.sizes else ():
        occluded = source.occluded(split, part)
        if occluded is None:
            continue
        if limit:
            occluded = occluded.take(limit)
        for batch in pipeline.prepare(
            occluded, image_size, batch_size, training=False,
            resize_ratio=resize_ratio, keep_masks=True,
        ):
            labels = batch["labels"].numpy()
            out = model.predict_on_batch(batch["images"].numpy().astype(np.float32))
            probs = np.asarray(keras.ops.convert_to_numpy(out["probabilities"]), np.float64)
            add(shared, f"top1_occluded_part{part}", np.argmax(probs, -1) == labels)
            add(shared, f"logp_occluded_part{part}",
                np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)))
            other = f"part{3 - part}_mask"
            if other in batch:
                mask = batch[other].numpy()
                attention = np.asarray(keras.ops.convert_to_numpy(out["attention"]))
                energies, _ = metrics.part_coverage(attention, [mask])
                add(shared, f"density_other_occluded_part{part}",
                    metrics.part_density(energies, [mask])[0])
    return {
        each: _result(shared, per_method[each], curves[each], iou[each], ts, seen, each,
                      split, image_size, resize_ratio, thresholds, rise_steps)
        for each in methods
    }


def _result(shared, store, curves, iou, ts, seen, method, split, image_size, resize_ratio,
            thresholds, rise_steps):
    """One method's result dict from the per-image values collected."""
    per_image = {key: np.concatenate(values) for key, values in {**shared, **store}.items()}
    per_image["score"] = per_image["insertion"] - per_image["deletion"]
    per_image["rise_score"] = per_image["rise_insertion"] - per_image["rise_deletion"]
    mean_curves = {key: np.concatenate(v).mean(axis=0) for key, v in curves.items()}
    result = {key: _nanmean(values) for key, values in per_image.items()}
    for suffix, values in iou.items():
        if values:
            result["iou" + suffix] = _nanmean(np.concatenate(values))
    for name in ("pointing_game", "energy_inside", "iou"):
        result.setdefault(name, None)
    result["examples"] = seen
    result["method"] = method
    result["params"] = {
        "split": split, "image_size": image_size, "resize_ratio": resize_ratio,
        "thresholds": thresholds, "threshold_map": explain_maps.SCALES[method],
        "threshold_baseline": "image mean colour",
        "rise_steps": rise_steps, "rise_blur": f"gaussian sigma {metrics.BLUR_SIGMA}, "
        f"{metrics.BLUR_SIZE}x{metrics.BLUR_SIZE}", "rise_deletion_baseline": "image mean colour",
        "localisation_threshold": 0.5, "coverage_density": metrics.COVERAGE_DENSITY,
    }
    result["curves"] = {
        "thresholds": ts.tolist(),
        **{key: value.tolist() for key, value in mean_curves.items()},
    }
    result["per_image"] = {key: values.tolist() for key, values in per_image.items()}
    return result


def _matched_inversion(attention):
    """`1 - A` moved back to each map's own mean and standard deviation
    (clipped to `[0, 1]`): the inverted ranking without the shift in the
    distribution of map values that plain `1 - A` brings, which the batch
    norms after `A * F` were not fitted to. `1 - A` has A's spread, so this
    is the reflection about A's mean, `2 mean(A) - A`."""
    mean = attention.mean(axis=(1, 2), keepdims=True)
    return np.clip(2.0 * mean - attention, 0.0, 1.0).astype(np.float32)


def intervention_top1(model, images, labels, attention, object_masks=None):
    """Top-1 with the attention map replaced (`INTERVENTIONS`), per image:
    its mean everywhere (`uniform`), the next image's (`shuffled`), `1 - A`
    (`inverted`), `1 - A` at A's mean and spread (`inverted_matched`) and,
    with masks, the object's mask (`object`).

    The direct faithfulness test of an ABN: a model that uses its map loses
    accuracy when the map is swapped, whatever the map looks like.

    Args:
        model: an `AttentionBranchNetwork`.
        images: `(N, H, W, 3)` preprocessed images.
        labels: `(N,)` true classes.
        attention: `(N, h, w)` the model's own attention maps.
        object_masks: optional `(N, H, W)` masks; adds `"object"`.

    Returns:
        A dict, `top1_attention_<name>` to `(N,)` booleans.
    """
    from keras_amb.models import compiled

    attention = np.asarray(attention, dtype=np.float32)
    n, height, width = attention.shape
    replaced = {
        "uniform": np.broadcast_to(
            attention.mean(axis=(1, 2), keepdims=True), attention.shape
        ).copy(),
        "shuffled": np.roll(attention, 1, axis=0),
        "inverted": 1.0 - attention,
        "inverted_matched": _matched_inversion(attention),
    }
    if object_masks is not None and object_masks.any():
        import tensorflow as tf

        small = tf.image.resize(
            object_masks[..., None].astype(np.float32), (height, width), method="area"
        ).numpy()[..., 0]
        replaced["object"] = np.clip(small, 0.0, 1.0)
    classify = compiled.compiled(
        model, "classify_with_attention",
        lambda m, x, a: m.classify_with_attention(x, a),
    )
    import keras

    results = {}
    for name, maps in replaced.items():
        logits = np.asarray(keras.ops.convert_to_numpy(
            classify(images.astype(np.float32), maps.astype(np.float32))
        ))
        results[f"top1_attention_{name}"] = np.argmax(logits, -1) == labels
    return results


def plot_curves(result, path, title=""):
    """Insertion and Deletion curves (both protocols) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    ts = curves["thresholds"]
    axes[0].plot(ts, curves["insertion"], label=f"Insertion (AUC {result['insertion']:.3f})")
    axes[0].plot(ts, curves["deletion"], label=f"Deletion (AUC {result['deletion']:.3f})")
    axes[0].set(xlabel=f"threshold t on the map ({result['params']['threshold_map']})",
                ylabel="accuracy", title="Threshold sweep (paper)")
    x = np.linspace(0, 1, len(curves["rise_insertion"]))
    axes[1].plot(x, curves["rise_insertion"], label=f"Insertion (AUC {result['rise_insertion']:.3f})")
    axes[1].plot(x, curves["rise_deletion"], label=f"Deletion (AUC {result['rise_deletion']:.3f})")
    axes[1].set(xlabel="fraction of pixels", ylabel="probability of predicted class",
                title="Pixel ranking (RISE)")
    for ax in axes:
        ax.set_ylim(0, 1.02)
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(for_terminal(title), parse_math=False)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # Through a temporary file: an earlier figure is never left half-written.
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")
    plt.close(fig)
    return path


def summary(result):
    """The result without per-image values and curves (what `--json` prints)."""
    return {k: result.get(k) for k in SUMMARY_KEYS if k in result}
