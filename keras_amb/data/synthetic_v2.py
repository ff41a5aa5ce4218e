"""Synthetic version 2: two cues per class (frozen).

The head's pattern and a tail patch at the other end of the body, each
enough on its own to name the class; each has its own mask (`part1_mask`:
head, `part2_mask`: tail; `part_mask` is their union). Distractors carry the
patterns of other classes, pattern colours are jittered and the parts are
small, so a small CPU-trained ABN stays clearly below the ceiling. The
background, pose and distractor placement are version 1's
(`data/synthetic.py`); `make_example_v2(..., occlude=1 or 2)` paints one part
over in the body's texture.
"""

import dataclasses

import numpy as np

from keras_amb.data import synthetic_scene as scene

# Eight hues, less saturated than version 1's and closer together: with the
# per-image jitter, neighbouring hues overlap a little.
_PALETTE_V2 = np.array(
    [
        [200, 70, 60],
        [190, 150, 50],
        [90, 170, 70],
        [60, 160, 160],
        [70, 100, 200],
        [150, 80, 190],
        [200, 90, 150],
        [130, 130, 130],
    ],
    dtype=np.float32,
)
_TEXTURES_V2 = ("solid", "stripes", "dots", "checks")


@dataclasses.dataclass(frozen=True)
class SyntheticConfigV2(scene.Splits):
    """Parameters of synthetic version 2 (two cues per class).

    Args:
        num_classes: int, number of classes (at most 32: 8 hues x 4 textures).
        image_size: int, side of the square images in pixels.
        train_size, val_size, test_size: int, examples per split.
        part_size: float, radius of the head (and size of the tail patch) as
            a fraction of the image side.
        distractors: int, off-object patches per image, each with the head
            or tail pattern of another class.
        noise: float, std of the pixel noise.
        colour_jitter: float, std of the per-image shift of part colours.
        seed: int, the dataset seed.
    """

    version: str = "2"
    num_classes: int = 24
    image_size: int = 64
    train_size: int = 2400
    val_size: int = 400
    test_size: int = 400
    part_size: float = 0.06
    distractors: int = 3
    noise: float = 16.0
    colour_jitter: float = 18.0
    seed: int = 2024

    def __post_init__(self):
        self._check(len(_PALETTE_V2) * len(_TEXTURES_V2))
        if not 0.03 <= self.part_size <= 0.15:
            raise ValueError(
                f"`part_size` must be in [0.03, 0.15]. Received: part_size={self.part_size!r}"
            )


def class_names_v2(num_classes):
    """`<head pattern>_head_<tail pattern>_tail` per class."""
    names = []
    for k in range(num_classes):
        head, tail = _pattern_pair(k)
        names.append(f"{_pattern_name(head)}_head_{_pattern_name(tail)}_tail")
    return names


_HUE_NAMES = ("red", "ochre", "green", "teal", "blue", "violet", "pink", "grey")


def _pattern_name(pattern):
    hue, texture = pattern
    return f"{_HUE_NAMES[hue]}-{_TEXTURES_V2[texture]}"


def _pattern_pair(label):
    """Head and tail patterns `(hue, texture)` of a class.

    Heads walk the hues first, tails the textures first: within each part
    every class has a pattern of its own, so each part names the class alone.
    """
    hues, textures = len(_PALETTE_V2), len(_TEXTURES_V2)
    head = (label % hues, (label // hues) % textures)
    tail = ((label // textures + 3) % hues, (label + 1) % textures)
    return head, tail


def _texture_v2(texture, yy, xx, phase):
    y, x = yy.astype(int) + phase[0], xx.astype(int) + phase[1]
    if texture == "solid":
        return np.ones_like(yy, dtype=bool)
    if texture == "stripes":
        return (y // 2) % 2 == 0
    if texture == "dots":
        return ((y // 2) % 2 == 0) & ((x // 2) % 2 == 0)
    return ((y // 2) + (x // 2)) % 2 == 0


def _paint_v2(image, region, pattern, jitter, yy, xx, phase):
    hue, texture = pattern
    colour = np.clip(_PALETTE_V2[hue] + jitter, 0, 255)
    on = _texture_v2(_TEXTURES_V2[texture], yy, xx, phase)
    image[region & on] = colour
    image[region & ~on] = colour * 0.35


def make_example_v2(config, split, index, occlude=None, distractors=True):
    """Draws example `index` of `split` (version 2); a dict of numpy arrays.

    Every random draw happens whether or not a part is occluded, so the
    occluded example differs from the original only inside that part.
    """
    if occlude not in (None, 1, 2):
        raise ValueError(f"`occlude` must be None, 1 or 2. Received: occlude={occlude!r}")
    rng = np.random.default_rng([config.seed, 100 + scene.SPLITS[split], index])
    size = config.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    label = int(rng.integers(config.num_classes))

    image = scene.background(rng, size, yy, xx)

    # Object: an ellipse body, a round head at the front and a square tail
    # patch at the back, at a random scale and orientation.
    scale = rng.uniform(0.85, 1.15)
    half_a, half_b = 0.2 * size * scale, 0.12 * size * scale
    part_r = config.part_size * size * scale
    u, v, body = scene.pose(rng, size, half_a, half_b, half_a + part_r, yy, xx)
    head_u = half_a + 0.5 * part_r
    head = (u - head_u) ** 2 + v**2 <= part_r**2
    tail_u = -(half_a - 0.7 * part_r)
    tail = (np.abs(u - tail_u) <= part_r) & (np.abs(v) <= part_r)
    body_colour = rng.uniform(90, 160) + rng.uniform(-15, 15, 3)
    body_texture = (np.sin(u * 0.8) * 10)[..., None]
    image[body] = body_colour
    image[body] += body_texture[body]

    head_pattern, tail_pattern = _pattern_pair(label)
    jitters = rng.normal(0, config.colour_jitter, (2, 3)).astype(np.float32)
    phases = rng.integers(0, 4, (2, 2))

    # Distractors: square patches off the object, each with the head or
    # tail pattern of another class.
    object_mask = body | head | tail
    side = int(round(1.8 * part_r))
    for _ in range(config.distractors):
        other = int(rng.integers(config.num_classes - 1))
        other += other >= label
        pattern = _pattern_pair(other)[int(rng.integers(2))]
        jitter = rng.normal(0, config.colour_jitter, 3).astype(np.float32)
        phase = rng.integers(0, 4, 2)
        square = scene.free_square(rng, size, side, object_mask, yy, xx)
        if square is not None and distractors:
            _paint_v2(image, square, pattern, jitter, yy, xx, phase)

    for part, region, pattern, jitter, phase in (
        (1, head, head_pattern, jitters[0], phases[0]),
        (2, tail & ~head, tail_pattern, jitters[1], phases[1]),
    ):
        if occlude == part:
            image[region] = body_colour
            image[region] += body_texture[region]
        else:
            _paint_v2(image, region, pattern, jitter, yy, xx, phase)
    image += rng.normal(0, config.noise, image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    box = scene.box(object_mask, size)
    part1, part2 = head, tail & ~head
    return {
        "image": image,
        "label": np.int32(label),
        "part_mask": (part1 | part2).astype(np.uint8),
        "part1_mask": part1.astype(np.uint8),
        "part2_mask": part2.astype(np.uint8),
        "object_mask": object_mask.astype(np.uint8),
        "box": box,
    }
