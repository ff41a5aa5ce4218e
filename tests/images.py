"""Writes a corpus of real-world image files, good and awkward, for tests."""

import os

import numpy as np
from PIL import Image


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_good_images(directory, seed=0):
    """One file per format and mode users throw at us; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    rgb = _rgb(40, 50, seed)
    paths = {}

    def save(name, image, **kwargs):
        path = os.path.join(directory, name)
        image.save(path, **kwargs)
        paths[name] = path

    save("rgb.jpg", Image.fromarray(rgb), quality=90)
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=90)
    save("grey.png", Image.fromarray(rgb[..., 0]))
    save("rgba.png", Image.fromarray(np.dstack([rgb, np.full((40, 50), 128, np.uint8)])))
    grey16 = (np.random.default_rng(seed).integers(0, 65536, (40, 50))).astype(np.uint16)
    save("grey16.png", Image.fromarray(grey16))
    save("palette.bmp", Image.fromarray(rgb))
    frames = [Image.fromarray(_rgb(30, 30, s)) for s in range(3)]
    frames[0].save(os.path.join(directory, "animated.gif"), save_all=True,
                   append_images=frames[1:], duration=50)
    paths["animated.gif"] = os.path.join(directory, "animated.gif")
    save("photo.webp", Image.fromarray(rgb))
    save("tiny.png", Image.fromarray(rgb[:1, :1]))
    return paths


def write_huge_image(path, colour=(90, 120, 150)):
    """A 6000x4000 px JPEG (a camera's full size) of one colour; returns the path."""
    Image.new("RGB", (6000, 4000), colour).save(path, quality=70)
    return str(path)


def write_bad_images(directory):
    """Unreadable files that carry image names; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    empty = os.path.join(directory, "empty.jpg")
    open(empty, "wb").close()
    paths["empty.jpg"] = empty
    truncated = os.path.join(directory, "truncated.jpg")
    Image.fromarray(_rgb(64, 64)).save(truncated, quality=90)
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 3])
    paths["truncated.jpg"] = truncated
    text = os.path.join(directory, "notes.jpg")
    with open(text, "w") as f:
        f.write("this is not an image\n")
    paths["notes.jpg"] = text
    folder = os.path.join(directory, "folder.jpg")
    os.makedirs(folder, exist_ok=True)
    paths["folder.jpg"] = folder
    return paths


def write_halves_dataset(root, per_class=10, size=24, classes=("left", "right"), prefix=""):
    """A class-subfolder dataset whose class is the bright half of the image
    (left or right): `root/<class>/<prefix><class><i>.png`. Returns the root."""
    for k, name in enumerate(classes):
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        half = size // len(classes)
        for i in range(per_class):
            image = np.full((size, size, 3), 60, np.uint8)
            image[:, half * k : half * (k + 1)] = 220
            Image.fromarray(image).save(os.path.join(folder, f"{prefix}{name}{i}.png"))
    return str(root)


def write_graded_dataset(root, classes=("cardinal", "sparrow", "wren"), per_class=12, seed=0):
    """A class-subfolder dataset of flat grey images (a grey level per class
    and image) plus one file of every awkward readable format per class;
    returns the root."""
    for k, name in enumerate(classes):
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        write_good_images(os.path.join(folder, "set0"), seed=seed + k * 10)
        for i in range(per_class):
            Image.fromarray(np.full((20, 24, 3), 40 * k + i, np.uint8)).save(
                os.path.join(folder, f"img{i}.png"))
    return str(root)


def write_digits_dataset(root, size=32):
    """1,797 real handwritten 8x8 digit scans (10 classes; UCI's optdigits,
    `tests/fixtures/digits/`), drawn at `size` x `size` as PNGs in
    `root/<digit>/<index>.png`; returns the root."""
    digits = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "digits", "digits.npz"))
    for index, (image, label) in enumerate(zip(digits["images"], digits["labels"])):
        folder = os.path.join(root, str(label))
        os.makedirs(folder, exist_ok=True)
        grey = (image.astype(np.float64) / 16.0 * 255).astype(np.uint8)
        picture = Image.fromarray(grey).resize((size, size), Image.BILINEAR).convert("RGB")
        picture.save(os.path.join(folder, f"{index}.png"))
    return str(root)
