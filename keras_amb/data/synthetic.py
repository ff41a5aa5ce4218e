"""A built-in, download-free fine-grained dataset ("synthetic birds").

Every image shows one object (an elliptical "body" with a round "head") on a
textured background, plus off-object distractors. The body, background and
distractors are drawn from distributions shared by all classes, so only the
object's parts tell the classes apart; part masks, the object mask and its
box let attention maps be scored.

- Version 1 (frozen): the class is told only by the head's pattern (colour
  and texture), a part covering about 3% of the image.
- Version 2 (`data/synthetic_v2.py`): two cues per class, the head's pattern and a tail patch at the
  other end of the body, each enough on its own to name the class; each has
  its own mask (`part1_mask`: head, `part2_mask`: tail; `part_mask` is their
  union). Distractors carry the patterns of other classes, pattern colours
  are jittered and the parts are small, so a small CPU-trained ABN stays
  clearly below the ceiling. It tests the paper's claim: a model whose
  attention covers all the class evidence keeps its accuracy when one part
  is painted over (`make_split(..., occlude=1 or 2)`).
- Version 3 (`data/synthetic_v3.py`): one easy cue (a large, saturated
  wing) and one hard cue (a small, pale tail patch) per class, each enough
  alone: the benchmark where ABN's attention can be shown to miss evidence.

Generation is deterministic: example `i` of split `s` depends only on
`(seed, s, i)` and the dataset parameters. A version never changes once
released (the tests hold fingerprints); new drawing code is a new version.
"""

import dataclasses

import numpy as np

from keras_amb.data.synthetic_scene import SPLITS as _SPLITS
from keras_amb.data.synthetic_scene import Splits as _Splits
from keras_amb.data.synthetic_scene import background as _background
from keras_amb.data.synthetic_scene import box as _box

SYNTHETIC_VERSION = "1"
VERSIONS = ("1", "2", "3")

# Saturated head colours (RGB); bodies, backgrounds are kept desaturated so
# they never look like a head.
_PALETTE = np.array(
    [
        [220, 40, 40],
        [40, 170, 60],
        [50, 80, 230],
        [235, 200, 30],
        [200, 60, 210],
        [30, 200, 210],
    ],
    dtype=np.float32,
)
_TEXTURES = ("solid", "stripes", "dots")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig(_Splits):
    """Parameters of synthetic version 1 (one cue per class, frozen).

    Args:
        num_classes: int, number of classes (at most 18: 6 colours x 3
            textures).
        image_size: int, side of the square images in pixels.
        train_size, val_size, test_size: int, examples per split.
        distractors: int, off-object distractor patches per image (drawn with
            random head patterns, square instead of round).
        noise: float, std of the pixel noise.
        seed: int, the dataset seed.
    """

    version: str = "1"
    num_classes: int = 8
    image_size: int = 64
    train_size: int = 2400
    val_size: int = 400
    test_size: int = 400
    distractors: int = 1
    noise: float = 8.0
    seed: int = 1234

    def __post_init__(self):
        self._check(len(_PALETTE) * len(_TEXTURES))


def class_names(num_classes):
    names = []
    for k in range(num_classes):
        colour = ("red", "green", "blue", "yellow", "magenta", "cyan")[k % len(_PALETTE)]
        texture = _TEXTURES[k // len(_PALETTE)]
        names.append(f"{colour}_{texture}_head")
    return names


def _paint_pattern(image, region, label, yy, xx):
    colour = _PALETTE[label % len(_PALETTE)]
    texture = _TEXTURES[label // len(_PALETTE)]
    if texture == "solid":
        pattern = np.ones_like(yy, dtype=bool)
    elif texture == "stripes":
        pattern = (yy.astype(int) // 2) % 2 == 0
    else:
        pattern = ((yy.astype(int) // 2) % 2 == 0) & ((xx.astype(int) // 2) % 2 == 0)
    dark = colour * 0.25
    image[region & pattern] = colour
    image[region & ~pattern] = dark


def make_example(config, split, index):
    """Draws example `index` of `split`; returns a dict of numpy arrays."""
    rng = np.random.default_rng([config.seed, _SPLITS[split], index])
    size = config.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    label = int(rng.integers(config.num_classes))

    image = _background(rng, size, yy, xx)

    # Object: an ellipse body and a round head at one end of its major axis.
    half_a, half_b = 0.2 * size, 0.12 * size
    head_r = 0.1 * size
    theta = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(theta), np.sin(theta)])
    reach = half_a + head_r
    cy, cx = rng.uniform(reach + 1, size - reach - 1, 2)
    dy, dx = yy - cy, xx - cx
    u = dx * direction[0] + dy * direction[1]
    v = -dx * direction[1] + dy * direction[0]
    body = (u / half_a) ** 2 + (v / half_b) ** 2 <= 1.0
    hy = cy + direction[1] * (half_a + 0.6 * head_r)
    hx = cx + direction[0] * (half_a + 0.6 * head_r)
    head = (yy - hy) ** 2 + (xx - hx) ** 2 <= head_r**2
    body_colour = rng.uniform(90, 160) + rng.uniform(-15, 15, 3)
    image[body] = body_colour
    image[body] += (np.sin(u[body] * 0.8) * 10)[:, None]

    # Distractors: square patches with random head patterns, off the object.
    object_mask = body | head
    for _ in range(config.distractors):
        side = int(round(1.6 * head_r))
        for _attempt in range(20):
            y0, x0 = rng.integers(0, size - side, 2)
            square = (yy >= y0) & (yy < y0 + side) & (xx >= x0) & (xx < x0 + side)
            if not (square & object_mask).any():
                _paint_pattern(
                    image, square, int(rng.integers(config.num_classes)), yy, xx
                )
                break

    _paint_pattern(image, head, label, yy, xx)
    image += rng.normal(0, config.noise, image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    box = _box(object_mask, size)
    return {
        "image": image,
        "label": np.int32(label),
        "part_mask": head.astype(np.uint8),
        "object_mask": object_mask.astype(np.uint8),
        "box": box,
    }


def _generator(version):
    """`(config class, example drawer, class namer)` of a version; the one
    place that maps versions to their code (versions 2 and 3 import this
    module, so they are imported here, when first asked for)."""
    from keras_amb.data import synthetic_v2
    from keras_amb.data import synthetic_v3

    if version not in VERSIONS:
        raise ValueError(
            f"`version` must be one of {VERSIONS}. Received: version={version!r}"
        )
    return {
        "1": (SyntheticConfig, make_example, class_names),
        "2": (synthetic_v2.SyntheticConfigV2, synthetic_v2.make_example_v2,
              synthetic_v2.class_names_v2),
        "3": (synthetic_v3.SyntheticConfigV3, synthetic_v3.make_example_v3,
              synthetic_v3.class_names_v3),
    }[version]


def draw_example(config, split, index, occlude=None, distractors=True):
    """Example `index` of `split`, drawn by the generator of `config`'s
    version (`occlude` and `distractors=False`: versions 2 and 3 only)."""
    draw = _generator(config.version)[1]
    if occlude is None and distractors:
        return draw(config, split, index)
    if config.version == "1":
        raise ValueError("`occlude` and `distractors=False` need version 2 or 3 "
                         "(two parts per class)")
    return draw(config, split, index, occlude, distractors=distractors)


def config_class(version):
    """The dataset config class of a version: `"1"`, `"2"` or `"3"`."""
    return _generator(version)[0]


def make_split(config, split, count=None, occlude=None, distractors=True):
    """All examples of a split, stacked: a dict of numpy arrays.

    `occlude` (versions 2 and 3): 1 or 2 paints that part over in the body's
    texture, all else unchanged. `distractors=False` (versions 2 and 3)
    leaves the distractor patches out, all else unchanged.
    """
    if split not in _SPLITS:
        raise ValueError(
            f"`split` must be one of {tuple(_SPLITS)}. Received: split={split!r}"
        )
    count = config.split_size(split) if count is None else count
    examples = [draw_example(config, split, i, occlude, distractors) for i in range(count)]
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def make_config(params=None):
    """The dataset config of a config file's `synthetic:` mapping.

    `version` picks the generator (`"1"`, the default, `"2"` or `"3"`); the
    other keys are that version's parameters.

    Example:
    >>> make_config({"version": "2", "num_classes": 8}).num_classes
    8
    """
    params = dict(params or {})
    version = str(params.pop("version", "1"))
    cls = config_class(version)
    known = {f.name for f in dataclasses.fields(cls)} - {"version"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"Unknown synthetic version {version} parameter(s) {unknown}. "
            f"Known: {sorted(known)}"
        )
    return cls(**params)


def names_for(config):
    """The class names of a dataset config (any version)."""
    return _generator(config.version)[2](config.num_classes)
