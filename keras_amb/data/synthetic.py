"""A built-in, download-free fine-grained dataset ("synthetic birds").

Every image shows one object (an elliptical "body" with a round "head") on a
textured background, plus off-object distractors. The body, background and
distractors are drawn from distributions shared by all classes; the class is
told only by the head's pattern (its colour and texture), a part covering
about 3% of the image. A classifier that looks at the wrong place cannot
score well, and the ground-truth part mask, object mask and box let
attention maps be scored.

Generation is deterministic: example `i` of split `s` depends only on
`(seed, s, i)` and the dataset parameters, and `SYNTHETIC_VERSION` is bumped
whenever the drawing code changes, so results stay comparable.
"""

import dataclasses

import numpy as np

SYNTHETIC_VERSION = "1"

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
_SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic dataset (the defaults are version 1).

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

    num_classes: int = 8
    image_size: int = 64
    train_size: int = 2400
    val_size: int = 400
    test_size: int = 400
    distractors: int = 1
    noise: float = 8.0
    seed: int = 1234

    def __post_init__(self):
        max_classes = len(_PALETTE) * len(_TEXTURES)
        if not 2 <= self.num_classes <= max_classes:
            raise ValueError(
                f"`num_classes` must be in [2, {max_classes}]. "
                f"Received: num_classes={self.num_classes!r}"
            )
        if self.image_size < 32:
            raise ValueError(
                f"`image_size` must be >= 32. Received: image_size={self.image_size!r}"
            )
        if self.distractors < 0:
            raise ValueError(
                f"`distractors` must be >= 0. Received: distractors={self.distractors!r}"
            )

    def split_size(self, split):
        return {"train": self.train_size, "val": self.val_size, "test": self.test_size}[
            split
        ]


def class_names(num_classes):
    names = []
    for k in range(num_classes):
        colour = ("red", "green", "blue", "yellow", "magenta", "cyan")[k % len(_PALETTE)]
        texture = _TEXTURES[k // len(_PALETTE)]
        names.append(f"{colour}_{texture}_head")
    return names


def _paint_pattern(image, region, label, yy, xx, rng):
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

    # Background: a desaturated two-colour gradient with soft blobs.
    c0, c1 = rng.uniform(70, 190, size=(2, 1, 1, 1)).astype(np.float32) + rng.uniform(
        -20, 20, size=(2, 1, 1, 3)
    ).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = ((np.cos(angle) * xx + np.sin(angle) * yy) / size + 1.0) / 2.0
    image = (c0[0] * (1 - t[..., None]) + c1[0] * t[..., None]).astype(np.float32)
    for _ in range(3):
        by, bx = rng.uniform(0, size, 2)
        radius = rng.uniform(0.1, 0.25) * size
        blob = np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * radius**2))
        image += blob[..., None] * rng.uniform(-35, 35, 3).astype(np.float32)

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
                    image, square, int(rng.integers(config.num_classes)), yy, xx, rng
                )
                break

    _paint_pattern(image, head, label, yy, xx, rng)
    image += rng.normal(0, config.noise, image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    rows = np.nonzero(object_mask.any(axis=1))[0]
    cols = np.nonzero(object_mask.any(axis=0))[0]
    box = np.array(
        [rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], dtype=np.float32
    ) / np.float32(size)
    return {
        "image": image,
        "label": np.int32(label),
        "part_mask": head.astype(np.uint8),
        "object_mask": object_mask.astype(np.uint8),
        "box": box,
    }


def make_split(config, split, count=None):
    """All examples of a split, stacked: a dict of numpy arrays."""
    if split not in _SPLITS:
        raise ValueError(
            f"`split` must be one of {tuple(_SPLITS)}. Received: split={split!r}"
        )
    count = config.split_size(split) if count is None else count
    examples = [make_example(config, split, i) for i in range(count)]
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}
