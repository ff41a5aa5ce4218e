"""`keras-amb visualize`: attention maps over images, with the top-5 classes."""

import dataclasses
import os
import re
import textwrap

import numpy as np

from keras_amb.data.image_io import ImageReadError
from keras_amb.data.image_io import read_image
from keras_amb.errors import UnknownClassError  # noqa: F401 (re-exported)
from keras_amb.explain import maps as explain_maps
from keras_amb.explain.overlay import COLORMAP
from keras_amb.explain.overlay import overlay
from keras_amb.files import atomic_save_array
from keras_amb.names import for_terminal
from keras_amb.files import atomic_write
from keras_amb.inference import expand_inputs
from keras_amb.inference import preprocess

TITLES = {"attention": "attention", "cam": "CAM", "gradcam": "Grad-CAM"}


@dataclasses.dataclass
class LoadedModel:
    """A model to draw, and the label of its row (unique in a figure;
    `unique_label`). The command line opens run folders into these."""

    label: str
    model: object


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


def _wrap(text, chars):
    """`text` with each of its lines broken into lines of at most `chars`."""
    return "\n".join(textwrap.fill(line, max(chars, 6)) for line in text.split("\n"))


def _fit(fig, texts, rounds=6):
    """Re-wraps each text until it is no wider than its limit, as laid out.

    Args:
        fig: the figure (its layout engine runs at every draw).
        texts: list of `(Text, source string, limit)`, `limit(renderer)`
            the width in pixels the text may take (its panel's).
    """
    chars = {id(text): max(len(line) for line in source.split("\n"))
             for text, source, _ in texts}
    for _ in range(rounds):
        fig.draw_without_rendering()
        renderer = fig.canvas.get_renderer()
        changed = False
        for text, source, limit in texts:
            width, allowed = text.get_window_extent(renderer).width, limit(renderer)
            if width > allowed and chars[id(text)] > 6:
                chars[id(text)] = max(6, min(chars[id(text)] - 1,
                                             int(chars[id(text)] * allowed / width)))
                text.set_text(_wrap(source, chars[id(text)]))
                changed = True
        if not changed:
            return


def draw(path, image_name, rows, methods, alpha=0.5, dpi=120):
    """One PNG: a row per model (input, an overlay per method, top-5 bars)
    and a colour bar that states each method's scale.

    Each row is a sub-figure headed by its model's label on a line of its
    own, and every title is wrapped to fit its panel as laid out, so that
    no two labels overlap, whatever the run, image and class names.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Names are data (`keras_amb.names`): one line each, drawn literally
    # (`parse_math=False`: a `$` in a file or class name is not mathtext).
    image_name = for_terminal(image_name)
    rows = [(for_terminal(label), crop, [(for_terminal(n), p) for n, p in top5], maps,
             for_terminal(explained)) for label, crop, top5, maps, explained in rows]
    cols = 2 + len(methods)
    panel = 3.4
    width = panel * cols + 2.0
    fig = plt.figure(figsize=(width, (panel + 0.6) * len(rows) + 1.2), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.06, wspace=0.04)
    parts = fig.subfigures(len(rows) + 1, 1, height_ratios=[panel + 0.6] * len(rows) + [1.0])
    texts = []  # (title, its text, the width it may take) for `_fit`

    def width_of(artist, share=0.97):
        return lambda renderer: share * artist.get_window_extent(renderer).width

    for part, (label, crop, top5, maps, explained) in zip(parts, rows):
        heading = part.suptitle(label, x=0.01, ha="left", fontsize=10, fontweight="bold",
                                parse_math=False)
        texts.append((heading, label, lambda renderer, part=part: 0.97 * part.bbox.width))
        axes = part.subplots(1, cols, width_ratios=[1] * (cols - 1) + [1.2])
        crop8 = np.clip(crop, 0, 255).astype(np.uint8)
        axes[0].imshow(crop8)
        texts.append((axes[0].set_title(image_name, fontsize=9, parse_math=False), image_name, width_of(axes[0])))
        axes[0].axis("off")
        for ax, method in zip(axes[1:], methods):
            ax.imshow(overlay(crop8, maps[method], alpha=alpha))
            if method == "attention":
                title = f"attention (class-agnostic)\npredicted: {explained}"
            else:
                title = f"{TITLES[method]}\nof {explained}"
            texts.append((ax.set_title(title, fontsize=9, parse_math=False), title, width_of(ax)))
            ax.axis("off")
        bars = axes[-1]
        names = [n for n, _ in top5][::-1]
        values = [p for _, p in top5][::-1]
        bars.barh(range(len(values)), values, color="#4c72b0")
        bars.set_yticks(range(len(values)))
        bars.set_yticklabels([f"{n}  {p:.1%}" for n, p in zip(names, values)], fontsize=8,
                             parse_math=False)
        bars.yaxis.tick_right()
        bars.set_xlim(0, 1)
        top = "top-5 (perception branch)"
        texts.append((bars.set_title(top, fontsize=9), top, width_of(bars)))
        bars.tick_params(axis="x", labelsize=8)
    scale = "; ".join(
        f"{TITLES[m]}: {'raw values in [0, 1]' if m == 'attention' else 'normalised to [0, 1]'}"
        for m in methods)
    grid = parts[-1].add_gridspec(2, cols, height_ratios=[1, 2],
                                  width_ratios=[1] * (cols - 1) + [1.2])
    colorbar_ax = parts[-1].add_subplot(grid[0, 1 : 1 + len(methods)])
    mappable = matplotlib.cm.ScalarMappable(
        norm=matplotlib.colors.Normalize(0, 1), cmap=COLORMAP
    )
    bar = parts[-1].colorbar(mappable, cax=colorbar_ax, orientation="horizontal")
    legend = f"map colour scale ({scale}); blended over the image at alpha {alpha}"
    bar.set_label(legend, fontsize=9)
    bar.ax.tick_params(labelsize=8)
    texts.append((bar.ax.xaxis.label, legend, lambda renderer: max(
        colorbar_ax.get_window_extent(renderer).width, 0.5 * parts[-1].bbox.width)))
    _fit(fig, texts)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def map_on_image(attention, height, width, resize_ratio):
    """A map over the center crop the model saw, placed on the whole image.

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


def save_map(store, key, attention, original_shape, resize_ratio, source, model_label):
    """Writes one image's map into `store` (a `data.map_store.MapStore`):
    `<key>.png`, the map as an editable grey image over the whole original
    (`map_on_image`), and `<key>.npy`, its raw values. Returns the PNG's path.
    """
    height, width = original_shape
    grey = map_on_image(attention, height, width, resize_ratio)
    return store.write(key, grey, source=source, model=model_label, raw=attention,
                       save_index=False)


def unique_label(name, used, separator):
    """`name`, or `name<separator>2`, `3`... the first not in `used` (which
    gains it): figure stems and row labels never collide."""
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}{separator}{n}"
    used.add(candidate)
    return candidate


def visualize(inputs, models, methods, output_dir, save_maps=False, class_name=None,
              alpha=0.5, report=print, error=print):
    """Writes one PNG per readable image; returns `(written, failed)` lists.

    With `save_maps`, `maps/<key>.png` is the first model's first map as an
    editable grey image over the whole original (for `--attention-targets`;
    the key is the image's path relative to the folder given, see
    `data.map_store`), `maps/<key>.npy` its raw values and
    `maps/<key>.<row>.<method>.npy` each model's raw maps, with
    `maps/index.json`.
    """
    from keras_amb.data import map_store

    for loaded in models:
        if class_name is not None and class_name not in loaded.model.get_class_names():
            raise UnknownClassError(
                f"{class_name!r} is not a class of {loaded.label}; its classes: "
                f"{', '.join(loaded.model.get_class_names()[:10])}..."
            )
    store = keys = None
    if save_maps:
        keys = dict(map_store.input_keys(inputs))
        store = map_store.MapStore(os.path.join(output_dir, "maps"))
    os.makedirs(output_dir, exist_ok=True)
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
        stem = unique_label(os.path.splitext(os.path.basename(path))[0], used, "-")
        rows = []
        for loaded in models:
            crop, top5, maps, explained = explain_image(image, loaded.model, methods, class_name)
            rows.append((loaded.label, crop, top5, maps, explained))
        out_path = os.path.join(output_dir, f"{stem}.png")
        atomic_write(out_path, lambda tmp, rows=rows: draw(
            tmp, os.path.basename(path), rows, methods, alpha=alpha), suffix=".png")
        if store is not None:
            png = save_map(store, keys[path], rows[0][3][methods[0]], image.shape[:2],
                           models[0].model.resize_ratio, methods[0], models[0].label)
            for loaded, row in zip(models, rows):
                for method, values in row[3].items():
                    name = f"{os.path.splitext(png)[0]}.{slug(loaded.label)}.{method}.npy"
                    atomic_save_array(name, values.astype(np.float32))
        top_name, top_p = rows[0][2][0]
        report(f"{path}: {top_name} ({top_p:.1%}) -> {out_path}")
        written.append(out_path)
    if store is not None:
        store.save_index()
    return written, failed
