"""`keras-amb evaluate`: accuracy, faithfulness and localisation on a split."""

import json
import os

import numpy as np

from keras_amb.data import pipeline
from keras_amb.explain import maps as explain_maps
from keras_amb.explain import metrics


def _nanmean(values):
    values = np.concatenate(values) if values else np.array([])
    values = values[~np.isnan(values)] if values.size else values
    return float(values.mean()) if values.size else None


def evaluate(
    model,
    source,
    split="test",
    image_size=None,
    batch_size=32,
    resize_ratio=None,
    method="attention",
    limit=None,
    thresholds=metrics.DEFAULT_THRESHOLDS,
    rise_steps=metrics.DEFAULT_RISE_STEPS,
    progress=True,
):
    """Evaluates a model on a dataset split; returns a dict of results.

    Keys: `top1`, `top5`, `att_top1`, `insertion`, `deletion`, `score`
    (paper's threshold sweep), `rise_insertion`, `rise_deletion`,
    `rise_score`, `pointing_game`, `energy_inside`, `iou` (against the
    object mask or box; None where the dataset has none) and, on the
    synthetic dataset, `*_part` against the discriminative part; `curves`
    holds the mean curves and `params` the protocol's parameters.
    """
    import keras

    image_size = image_size or model.image_size
    resize_ratio = resize_ratio or source.resize_ratio
    examples = source.examples(split)
    if limit:
        examples = examples.take(limit)
    batches = pipeline.prepare(
        examples, image_size, batch_size, training=False,
        resize_ratio=resize_ratio, keep_masks=True,
    )
    total = source.sizes.get(split)
    total = min(total, limit) if (total and limit) else (total or limit)
    bar = keras.utils.Progbar(total, unit_name="image") if progress else None

    def predict(x):
        return np.asarray(model.predict_on_batch(x.astype(np.float32))["probabilities"])

    k = min(5, model.num_classes)
    acc = {"top1": [], "top5": [], "att_top1": []}
    curves = {"insertion": [], "deletion": [], "rise_insertion": [], "rise_deletion": []}
    local = {}
    seen = 0
    ts = None
    for batch in batches:
        images = batch["images"].numpy()
        labels = batch["labels"].numpy()
        out = model.predict_on_batch(images)
        probs = np.asarray(out["probabilities"])
        topk = np.argsort(-probs, axis=-1)[:, :k]
        acc["top1"].append(topk[:, 0] == labels)
        acc["top5"].append((topk == labels[:, None]).any(axis=1))
        acc["att_top1"].append(np.argmax(np.asarray(out["attention_probabilities"]), -1) == labels)
        saliency = (
            np.asarray(out["attention"]) if method == "attention"
            else explain_maps.compute(model, images, method)
        )
        ts, ins, dele = metrics.threshold_curves(predict, images, labels, saliency, thresholds)
        r_ins, r_del = metrics.rise_curves(predict, images, saliency, rise_steps)
        for key, value in zip(curves, (ins, dele, r_ins, r_del)):
            curves[key].append(value)
        for mask_key, suffix in (("object_mask", ""), ("part_mask", "_part")):
            if mask_key in batch:
                p, e, i = metrics.localisation(saliency, batch[mask_key].numpy())
                for name, value in (("pointing_game", p), ("energy_inside", e), ("iou", i)):
                    local.setdefault(name + suffix, []).append(value)
        seen += len(labels)
        if bar is not None:
            bar.update(seen)
    if seen == 0:
        raise ValueError(f"split {split!r} of {source.name} has no examples")
    mean_curves = {key: np.concatenate(v).mean(axis=0) for key, v in curves.items()}
    result = {key: float(np.concatenate(v).mean()) for key, v in acc.items()}
    result["insertion"] = float(metrics.auc(mean_curves["insertion"], ts))
    result["deletion"] = float(metrics.auc(mean_curves["deletion"], ts))
    result["score"] = result["insertion"] - result["deletion"]
    result["rise_insertion"] = float(metrics.auc(mean_curves["rise_insertion"]))
    result["rise_deletion"] = float(metrics.auc(mean_curves["rise_deletion"]))
    result["rise_score"] = result["rise_insertion"] - result["rise_deletion"]
    for name in ("pointing_game", "energy_inside", "iou"):
        result[name] = _nanmean(local.get(name, []))
        if name + "_part" in local:
            result[name + "_part"] = _nanmean(local[name + "_part"])
    result["examples"] = seen
    result["method"] = method
    result["params"] = {
        "split": split, "image_size": image_size, "resize_ratio": resize_ratio,
        "thresholds": thresholds, "threshold_baseline": "image mean colour",
        "rise_steps": rise_steps, "rise_blur": f"gaussian sigma {metrics.BLUR_SIGMA}, "
        f"{metrics.BLUR_SIZE}x{metrics.BLUR_SIZE}", "rise_deletion_baseline": "image mean colour",
        "localisation_threshold": 0.5,
    }
    result["curves"] = {
        "thresholds": ts.tolist(),
        **{key: value.tolist() for key, value in mean_curves.items()},
    }
    return result


def plot_curves(result, path, title=""):
    """Insertion and Deletion curves (both protocols) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ts = curves["thresholds"]
    axes[0].plot(ts, curves["insertion"], label=f"Insertion (AUC {result['insertion']:.3f})")
    axes[0].plot(ts, curves["deletion"], label=f"Deletion (AUC {result['deletion']:.3f})")
    axes[0].set(xlabel="attention threshold t", ylabel="accuracy", title="Threshold sweep (paper)")
    x = np.linspace(0, 1, len(curves["rise_insertion"]))
    axes[1].plot(x, curves["rise_insertion"], label=f"Insertion (AUC {result['rise_insertion']:.3f})")
    axes[1].plot(x, curves["rise_deletion"], label=f"Deletion (AUC {result['rise_deletion']:.3f})")
    axes[1].set(xlabel="fraction of pixels", ylabel="probability of predicted class", title="Pixel ranking (RISE)")
    for ax in axes:
        ax.set_ylim(0, 1.02)
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_json(result):
    keys = ("top1", "top5", "att_top1", "insertion", "deletion", "score", "rise_insertion",
            "rise_deletion", "rise_score", "pointing_game", "energy_inside", "iou",
            "pointing_game_part", "energy_inside_part", "iou_part", "examples", "method", "params")
    return json.dumps({k: result.get(k) for k in keys if k in result or k in keys[:12]})
