"""`keras-amb visualize`: attention maps over images, with the top-5 classes."""

import dataclasses
import os
import re

import numpy as np

from keras_amb.data.image_io import ImageReadError
from keras_amb.data.image_io import read_image
from keras_amb.explain import maps as explain_maps
from keras_amb.explain.overlay import COLORMAP
from keras_amb.explain.overlay import overlay
from keras_amb.files import atomic_save_array
from keras_amb.files import atomic_save_image
from keras_amb.files import atomic_write
from keras_amb.inference import expand_inputs
from keras_amb.inference import preprocess

TITLES = {"attention": "attention", "cam": "CAM", "gradcam": "Grad-CAM"}


class UnknownClassError(ValueError):
    """`class_name` is not one of a model's classes."""


@dataclasses.dataclass
class LoadedModel:
    """A model to draw, and the label of its row (unique in a figure)."""

    label: str
    model: object


def load_models(paths):
    """`LoadedModel`s for run folders or model files; labels are the run and
    file (`run/abn.keras`) with the architecture, made unique."""
    from keras_amb.runs import Run
    from keras_amb.trainer import describe

    loaded, used = [], set()
    for path in paths:
        run = Run.open(path)
        model = run.load_model()
        label = f"{run.name} ({describe(model)})"
        unique, n = label, 1
        while unique in used:
            n += 1
            unique = f"{label} #{n}"
        used.add(unique)
        loaded.append(LoadedModel(label=unique, model=model))
    return loaded


def slug(text):
    """A file-name-safe version of a row label."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")


def explain_image(image, model, methods, class_name=None):
    """`(crop, top5, maps, explained_class)` of one RGB image."""
    x = preprocess(image, model.image_size, model.resize_ratio)[None]
    class_ids = None
    if class_name is not None:
        class_ids = [model.get_class_names().index(class_name)]
    outputs, maps = explain_maps.explain(model, x, methods, class_ids)
    top5 = model.decode_predictions(outputs["probabilities"], 5)[0]
    explained = class_name if class_name is not None else top5[0][0]
    return x[0], top5, {m: v[0] for m, v in maps.items()}, explained


def draw(path, image_name, rows, methods, alpha=0.5, dpi=120):
    """One PNG: a row per model (input, an overlay per method, top-5 bars)
    and a colour bar that states each method's scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2 + len(methods)
    panel = 3.4
    fig = plt.figure(figsize=(panel * cols + 2.0, panel * len(rows) + 1.2))
    grid = fig.add_gridspec(len(rows) + 1, cols, height_ratios=[1] * len(rows) + [0.05],
                            width_ratios=[1] * (cols - 1) + [1.2], wspace=0.12, hspace=0.5)
    for r, (label, crop, top5, maps, explained) in enumerate(rows):
        crop8 = np.clip(crop, 0, 255).astype(np.uint8)
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(crop8)
        ax.set_title(f"{label}\n{image_name}", fontsize=9, loc="left")
        ax.axis("off")
        for c, method in enumerate(methods, start=1):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(overlay(crop8, maps[method], alpha=alpha))
            if method == "attention":
                title = f"attention (class-agnostic)\npredicted: {explained}"
            else:
                title = f"{TITLES[method]}\nof {explained}"
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        bars = fig.add_subplot(grid[r, cols - 1])
        names = [n for n, _ in top5][::-1]
        values = [p for _, p in top5][::-1]
        bars.barh(range(len(values)), values, color="#4c72b0")
        bars.set_yticks(range(len(values)))
        bars.set_yticklabels([f"{n}  {p:.1%}" for n, p in zip(names, values)], fontsize=8)
        bars.yaxis.tick_right()
        bars.set_xlim(0, 1)
        bars.set_title("top-5 (perception branch)", fontsize=9)
        bars.tick_params(axis="x", labelsize=8)
    scale = "; ".join(
        f"{TITLES[m]}: {'raw values in [0, 1]' if m == 'attention' else 'normalised to [0, 1]'}"
        for m in methods)
    colorbar_ax = fig.add_subplot(grid[len(rows), 1 : 1 + len(methods)])
    mappable = matplotlib.cm.ScalarMappable(
        norm=matplotlib.colors.Normalize(0, 1), cmap=COLORMAP
    )
    bar = fig.colorbar(mappable, cax=colorbar_ax, orientation="horizontal")
    bar.set_label(f"map colour scale ({scale}); blended over the image at alpha {alpha}",
                  fontsize=9)
    bar.ax.tick_params(labelsize=8)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def map_on_image(attention, height, width, resize_ratio):
    """A map over the centre crop the model saw, placed on the whole image.

    Returns an 8-bit grey image of the original size (0 outside the crop):
    edit it, and pass its folder to `keras-amb train --attention-targets`.
    """
    side = max(1, int(round(min(height, width) / max(resize_ratio, 1.0))))
    top, left = (height - side) // 2, (width - side) // 2
    grey = np.zeros((height, width), np.uint8)
    grey[top : top + side, left : left + side] = np.clip(
        explain_maps.upsample(np.asarray(attention)[None], side, side)[0] * 255, 0, 255
    ).astype(np.uint8)
    return grey


def _unique_stem(stem, used):
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


def visualize(inputs, models, methods, output_dir, save_maps=False, class_name=None,
              alpha=0.5, report=print, error=print):
    """Writes one PNG per readable image; returns `(written, failed)` lists.

    With `save_maps`, `maps/<stem>.png` is the first model's first map as an
    editable grey image over the whole original (for `--attention-targets`),
    and `maps/<stem>.<row>.<method>.npy` each model's raw maps.
    """

    for loaded in models:
        if class_name is not None and class_name not in loaded.model.get_class_names():
            raise UnknownClassError(
                f"{class_name!r} is not a class of {loaded.label}; its classes: "
                f"{', '.join(loaded.model.get_class_names()[:10])}..."
            )
    os.makedirs(output_dir, exist_ok=True)
    if save_maps:
        os.makedirs(os.path.join(output_dir, "maps"), exist_ok=True)
    written, failed, used = [], [], set()
    # The output folder may lie inside an input folder: its earlier figures
    # and maps are not inputs.
    for path in expand_inputs(inputs, exclude=[output_dir]):
        try:
            image = read_image(path)
        except ImageReadError as err:
            error(f"error: {err}")
            failed.append(path)
            continue
        stem = _unique_stem(os.path.splitext(os.path.basename(path))[0], used)
        rows = []
        for loaded in models:
            crop, top5, maps, explained = explain_image(image, loaded.model, methods, class_name)
            rows.append((loaded.label, crop, top5, maps, explained))
        out_path = os.path.join(output_dir, f"{stem}.png")
        atomic_write(out_path, lambda tmp, rows=rows: draw(
            tmp, os.path.basename(path), rows, methods, alpha=alpha), suffix=".png")
        if save_maps:
            first = rows[0][3][methods[0]]
            grey = map_on_image(first, image.shape[0], image.shape[1],
                                models[0].model.resize_ratio)
            atomic_save_image(os.path.join(output_dir, "maps", f"{stem}.png"), grey)
            atomic_save_array(os.path.join(output_dir, "maps", f"{stem}.npy"),
                              first.astype(np.float32))
            for loaded, row in zip(models, rows):
                for method, values in row[3].items():
                    name = f"{stem}.{slug(loaded.label)}.{method}.npy"
                    atomic_save_array(os.path.join(output_dir, "maps", name),
                                      values.astype(np.float32))
        top_name, top_p = rows[0][2][0]
        report(f"{path}: {top_name} ({top_p:.1%}) -> {out_path}")
        written.append(out_path)
    return written, failed
