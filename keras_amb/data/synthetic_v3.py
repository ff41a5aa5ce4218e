"""Synthetic version 3: one easy cue and one hard cue per class.

The paper's claim is that ABN's attention settles on the most
discriminative spot and that attention mining makes it cover the rest of the
evidence. A benchmark can test that only if ABN's attention is in fact
incomplete, so each class here has two cues, each enough on its own to name
the class, that differ in how soon a network learns them:

- the **easy** cue (`part1_mask`): a large wing on the body, in one of six
  saturated colours and one of two textures, high contrast against the grey
  body (about 4% of the image);
- the **hard** cue (`part2_mask`): a small tail patch (about 1% of the
  image) in one of twelve pale hues, low chroma against the body, under
  pixel noise.

Both cues are drawn from the label alone; body, background, pose and scale
are shared by all classes. `make_example_v3(..., occlude=1)` paints the easy
cue over in the body's texture (2: the hard cue), with every random draw
unchanged, so the occluded test sets differ from the originals only inside
that cue. Generation is deterministic (example `i` of split `s` depends on
`(seed, s, i)` and the parameters), and a released version never changes.
"""

import dataclasses

import numpy as np

from keras_amb.data import synthetic_scene as scene

# Saturated wing colours (RGB) and wing textures: 6 x 2 easy patterns.
_WING_COLOURS = np.array(
    [
        [225, 35, 35],
        [35, 175, 55],
        [45, 75, 235],
        [240, 205, 25],
        [205, 55, 215],
        [25, 205, 215],
    ],
    dtype=np.float32,
)
_WING_TEXTURES = ("solid", "stripes")
_COLOUR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan")
# Tail hues: twelve directions on the colour wheel, added to the body's grey.
_TAIL_HUES = np.linspace(0, 2 * np.pi, 12, endpoint=False)
_MAX_CLASSES = len(_WING_COLOURS) * len(_WING_TEXTURES)


@dataclasses.dataclass(frozen=True)
class SyntheticConfigV3(scene.Splits):
    """Parameters of synthetic version 3 (one easy and one hard cue).

    Args:
        num_classes: int, number of classes (at most 12).
        image_size: int, side of the square images in pixels.
        train_size, val_size, test_size: int, examples per split.
        wing_size: float, the wing's half-length as a fraction of the body's.
        tail_size: float, half-side of the tail patch as a fraction of the
            image side (the hard cue's size).
        tail_chroma: float, how far (in RGB units) the tail's hue moves its
            colour away from the body's grey (the hard cue's contrast).
        distractors: int, off-object square patches per image, each with the
            wing colour of another class.
        noise: float, std of the pixel noise.
        seed: int, the dataset seed.
    """

    version: str = "3"
    num_classes: int = 12
    image_size: int = 64
    train_size: int = 2400
    val_size: int = 400
    test_size: int = 400
    wing_size: float = 0.7
    tail_size: float = 0.05
    tail_chroma: float = 40.0
    distractors: int = 1
    noise: float = 12.0
    seed: int = 3033

    def __post_init__(self):
        self._check(_MAX_CLASSES)
        for name, low, high in (("wing_size", 0.3, 0.9), ("tail_size", 0.03, 0.12),
                                ("tail_chroma", 5.0, 120.0)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(
                    f"`{name}` must be in [{low}, {high}]. Received: {name}={value!r}"
                )


def class_names_v3(num_classes):
    """`<colour>-<texture>_wing_<hue>_tail` per class."""
    names = []
    for k in range(num_classes):
        colour, texture, hue = _cues(k)
        names.append(
            f"{_COLOUR_NAMES[colour]}-{_WING_TEXTURES[texture]}_wing_hue{hue:02d}_tail"
        )
    return names


def _cues(label):
    """`(wing colour, wing texture, tail hue)` of a class: each part names
    the class alone (the wing by colour and texture, the tail by hue), and
    the tail's hue order is shuffled against the wing's."""
    colour = label % len(_WING_COLOURS)
    texture = label // len(_WING_COLOURS)
    hue = (5 * label + 3) % len(_TAIL_HUES)
    return colour, texture, hue


def _paint_wing(image, region, colour, texture, u, v):
    on = np.ones_like(region) if texture == 0 else (np.floor(u / 2.0) % 2 == 0)
    image[region & on] = _WING_COLOURS[colour]
    image[region & ~on] = _WING_COLOURS[colour] * 0.3


def _tail_colour(body_colour, hue, chroma):
    """The body's colour moved `chroma` towards one hue, keeping its grey
    level (a zero-mean RGB direction)."""
    angle = _TAIL_HUES[hue]
    direction = np.array(
        [np.cos(angle), np.cos(angle - 2 * np.pi / 3), np.cos(angle + 2 * np.pi / 3)],
        dtype=np.float32,
    )
    return np.clip(body_colour + chroma * direction, 0, 255)


def make_example_v3(config, split, index, occlude=None, distractors=True):
    """Draws example `index` of `split` (version 3); a dict of numpy arrays.

    `occlude`: None, 1 (the easy cue, the wing, painted over) or 2 (the hard
    cue, the tail). `distractors=False` draws the same image without its
    distractors (every random draw is still made, so nothing else changes).
    """
    if occlude not in (None, 1, 2):
        raise ValueError(f"`occlude` must be None, 1 or 2. Received: occlude={occlude!r}")
    rng = np.random.default_rng([config.seed, 300 + scene.SPLITS[split], index])
    size = config.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    label = int(rng.integers(config.num_classes))
    colour, texture, hue = _cues(label)

    image = scene.background(rng, size, yy, xx)

    scale = rng.uniform(0.9, 1.1)
    half_a, half_b = 0.22 * size * scale, 0.13 * size * scale
    tail_r = config.tail_size * size * scale
    u, v, body = scene.pose(rng, size, half_a, half_b, half_a + tail_r, yy, xx)
    # The wing: an ellipse on the front of the body; the tail: a square
    # patch at its back end, apart from the wing.
    wing_a, wing_b = config.wing_size * half_a * 0.6, 0.75 * half_b
    wing = (((u - 0.3 * half_a) / wing_a) ** 2 + (v / wing_b) ** 2 <= 1.0) & body
    tail_u = -(half_a - 1.2 * tail_r)
    tail = (np.abs(u - tail_u) <= tail_r) & (np.abs(v) <= tail_r) & ~wing
    grey = rng.uniform(100, 150)
    body_colour = (grey + rng.uniform(-6, 6, 3)).astype(np.float32)
    body_texture = (np.sin(u * 0.8) * 8)[..., None]
    image[body] = body_colour
    image[body] += body_texture[body]

    object_mask = body | tail
    side = int(round(2.2 * tail_r))
    for _ in range(config.distractors):
        other = int(rng.integers(config.num_classes - 1))
        other += other >= label
        phase = rng.integers(0, 4)
        square = scene.free_square(rng, size, side, object_mask, yy, xx)
        if square is not None and distractors:
            _paint_wing(image, square, _cues(other)[0], _cues(other)[1], xx + phase, yy)

    if occlude == 1:
        image[wing] = body_colour
        image[wing] += body_texture[wing]
    else:
        _paint_wing(image, wing, colour, texture, u, v)
    if occlude != 2:
        image[tail] = _tail_colour(body_colour, hue, config.tail_chroma)
        image[tail] += body_texture[tail]
    image += rng.normal(0, config.noise, image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    return {
        "image": image,
        "label": np.int32(label),
        "part_mask": (wing | tail).astype(np.uint8),
        "part1_mask": wing.astype(np.uint8),
        "part2_mask": tail.astype(np.uint8),
        "object_mask": object_mask.astype(np.uint8),
        "box": scene.box(object_mask, size),
    }
