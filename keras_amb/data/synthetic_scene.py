"""What every version of the synthetic dataset draws with: split sizes and
their checks, the background, a body's pose, distractor squares and the
object's box. Versions 1 (`synthetic`), 2 and 3 import these; nothing here
imports a version.
"""

import numpy as np

SPLITS = {"train": 0, "val": 1, "test": 2}


class Splits:
    """What both versions' configs share: split sizes and the common checks."""

    def split_size(self, split):
        return {"train": self.train_size, "val": self.val_size, "test": self.test_size}[
            split
        ]

    def _check(self, max_classes):
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


def background(rng, size, yy, xx):
    """A desaturated two-colour gradient with soft blobs, float32 HxWx3."""
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
    return image


def pose(rng, size, half_a, half_b, reach, yy, xx):
    """A body's random orientation and position (the object reaching `reach`
    from its center stays inside the image): the body frame's coordinates
    `(u, v)` of every pixel (u along the major axis, towards the head) and
    the ellipse body's mask. Versions 2 and 3 draw the same way."""
    theta = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(theta), np.sin(theta)])
    cy, cx = rng.uniform(reach + 1, size - reach - 1, 2)
    dy, dx = yy - cy, xx - cx
    u = dx * direction[0] + dy * direction[1]
    v = -dx * direction[1] + dy * direction[0]
    return u, v, (u / half_a) ** 2 + (v / half_b) ** 2 <= 1.0


def free_square(rng, size, side, avoid, yy, xx, attempts=20):
    """A random `side`-pixel square mask that misses `avoid`, or None after
    `attempts` tries (distractors of versions 2 and 3)."""
    for _attempt in range(attempts):
        y0, x0 = rng.integers(0, size - side, 2)
        square = (yy >= y0) & (yy < y0 + side) & (xx >= x0) & (xx < x0 + side)
        if not (square & avoid).any():
            return square
    return None


def box(object_mask, size):
    """The object's box `[ymin, xmin, ymax, xmax]`, as fractions of the side."""
    rows = np.nonzero(object_mask.any(axis=1))[0]
    cols = np.nonzero(object_mask.any(axis=0))[0]
    return np.array(
        [rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], dtype=np.float32
    ) / np.float32(size)
