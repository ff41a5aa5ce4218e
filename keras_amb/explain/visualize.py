"""`keras-amb visualize`: attention maps over images, with the top-5 classes."""

import dataclasses
import os

import numpy as np

from keras_amb.data.image_io import IMAGE_EXTENSIONS
from keras_amb.data.image_io import ImageReadError
from keras_amb.data.image_io import read_image
from keras_amb.explain import maps as explain_maps
from keras_amb.explain.overlay import overlay


@dataclasses.dataclass
class LoadedRun:
    name: str
    model: object
    class_names: list
    resize_ratio: float


def load_run(run):
    from keras_amb import runs
    from keras_amb import trainer

    path = runs.find_model_file(run)
    run_dir = runs.run_dir_of(run)
    model = trainer.load_model(path)
    names = runs.read_labels(run_dir) or [f"class_{i}" for i in range(model.num_classes)]
    return LoadedRun(
        name=os.path.basename(os.path.normpath(run_dir)),
        model=model, class_names=names,
        resize_ratio=trainer.run_resize_ratio(run_dir),
    )


def expand_inputs(inputs):
    """Files as given, folders expanded to their image files (sorted)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item) and not item.lower().endswith(IMAGE_EXTENSIONS):
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames.sort()
                paths.extend(
                    os.path.join(dirpath, f) for f in sorted(filenames)
                    if f.lower().endswith(IMAGE_EXTENSIONS)
                )
        else:
            paths.append(item)
    return paths


def preprocess(image, size, resize_ratio):
    """An RGB uint8 image as the model sees it: float32 (S, S, 3) in [0, 255]."""
    import tensorflow as tf

    from keras_amb.data.pipeline import center_crop

    return center_crop(tf.constant(image, tf.float32), size, resize_ratio).numpy()


def explain_image(image, loaded, methods):
    x = preprocess(image, loaded.model.image_size, loaded.resize_ratio)[None]
    out = loaded.model.predict_on_batch(x)
    probs = np.asarray(out["probabilities"])[0]
    top = np.argsort(-probs)[:5]
    results = {}
    for method in methods:
        if method == "attention":
            results[method] = np.asarray(out["attention"])[0]
        else:
            results[method] = explain_maps.compute(loaded.model, x, method)[0]
    return x[0], [(loaded.class_names[i], float(probs[i])) for i in top], results


def draw(path, image_name, rows, methods):
    """One PNG: a row per model (input, overlays per method, top-5 bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2 + len(methods)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.0 * cols, 3.2 * len(rows)), squeeze=False)
    for r, (run_name, crop, top5, maps) in enumerate(rows):
        crop8 = np.clip(crop, 0, 255).astype(np.uint8)
        axes[r, 0].imshow(crop8)
        axes[r, 0].set_title(f"{run_name}\n{image_name}", fontsize=8)
        for c, method in enumerate(methods, start=1):
            axes[r, c].imshow(overlay(crop8, maps[method]))
            axes[r, c].set_title(method, fontsize=9)
        for ax in axes[r, : cols - 1]:
            ax.axis("off")
        bars = axes[r, cols - 1]
        names = [n for n, _ in top5][::-1]
        values = [p for _, p in top5][::-1]
        bars.barh(range(len(values)), values, color="#4c72b0")
        bars.set_yticks(range(len(values)))
        bars.set_yticklabels([f"{n} {p:.1%}" for n, p in zip(names, values)], fontsize=7)
        bars.set_xlim(0, 1)
        bars.set_title("top-5", fontsize=9)
        bars.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def map_on_image(attention, height, width, resize_ratio):
    """A map over the centre crop the model saw, placed on the whole image.

    Returns an 8-bit grey image of the original size (0 outside the crop):
    edit it, and pass its folder to `keras-amb train --attention-targets`.
    """
    from keras_amb.explain.overlay import upsample

    side = max(1, int(round(min(height, width) / max(resize_ratio, 1.0))))
    top, left = (height - side) // 2, (width - side) // 2
    grey = np.zeros((height, width), np.uint8)
    grey[top : top + side, left : left + side] = np.clip(
        upsample(attention, side, side) * 255, 0, 255
    ).astype(np.uint8)
    return grey


def _unique_stem(stem, used):
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


def visualize(inputs, loaded_runs, methods, output_dir, save_maps=False, report=print, error=print):
    """Writes one PNG per readable image; returns `(written, failed)` lists."""
    from PIL import Image

    os.makedirs(output_dir, exist_ok=True)
    if save_maps:
        os.makedirs(os.path.join(output_dir, "maps"), exist_ok=True)
    written, failed, used = [], [], set()
    for path in expand_inputs(inputs):
        try:
            image = read_image(path)
        except ImageReadError as err:
            error(f"error: {err}")
            failed.append(path)
            continue
        stem = _unique_stem(os.path.splitext(os.path.basename(path))[0], used)
        rows = []
        for loaded in loaded_runs:
            crop, top5, maps = explain_image(image, loaded, methods)
            rows.append((loaded.name, crop, top5, maps))
        out_path = os.path.join(output_dir, f"{stem}.png")
        draw(out_path, os.path.basename(path), rows, methods)
        if save_maps:
            first = rows[0][3][methods[0]]
            np.save(os.path.join(output_dir, "maps", f"{stem}.npy"), first.astype(np.float32))
            grey = map_on_image(first, image.shape[0], image.shape[1], loaded_runs[0].resize_ratio)
            Image.fromarray(grey).save(os.path.join(output_dir, "maps", f"{stem}.png"))
            for loaded, (_, _, _, maps) in zip(loaded_runs, rows):
                for method, m in maps.items():
                    np.save(os.path.join(output_dir, "maps", f"{stem}.{loaded.name}.{method}.npy"),
                            m.astype(np.float32))
        top_name, top_p = rows[0][2][0]
        report(f"{path}: {top_name} ({top_p:.1%}) -> {out_path}")
        written.append(out_path)
    return written, failed
