"""`DataSource`: what every dataset source gives its callers (the built-in
synthetic set, TFDS datasets, image folders; `data.sources` builds them)."""

import dataclasses

from keras_amb.data import map_store
from keras_amb.errors import DatasetError


@dataclasses.dataclass
class DataSource:
    """A dataset's splits, class names and what annotations it carries.

    Attributes:
        name: str, the dataset's name (or folder path).
        class_names: list of str.
        annotations: tuple of mask keys the examples carry.
        sizes: dict, split -> number of examples (None if unknown).
        skipped: list of `(path, reason)` of files left out.
        resize_ratio: float, test-time resize ratio that suits the data.
        files: dict, split -> `[(path, label)]` (image folders only).
    """

    name: str
    class_names: list
    annotations: tuple
    sizes: dict
    make: object = dataclasses.field(repr=False, default=None)
    skipped: list = dataclasses.field(default_factory=list)
    resize_ratio: float = 256 / 224
    make_occluded: object = dataclasses.field(repr=False, default=None)
    files: dict = dataclasses.field(repr=False, default=None)

    @property
    def num_classes(self):
        return len(self.class_names)

    def keys(self, split):
        """Each example's key (`data.map_store`), in the split's order:
        an image folder's relative paths, else `<split>/<example id>`."""
        if self.files is not None:
            return [map_store.folder_key(p, self.name) for p, _ in self.files[split]]
        if self.sizes.get(split) is None:
            raise DatasetError(
                f"Dataset {self.name!r}: the size of split {split!r} is unknown, so its "
                "examples cannot be keyed"
            )
        return [map_store.example_key(split, i) for i in range(self.sizes[split])]

    def all_keys(self):
        return [key for split in self.sizes for key in self.keys(split)]

    def examples(self, split):
        """The split's examples; `<split>_occluded_part<N>` (e.g.
        `test_occluded_part1`) is that split with part N painted over, where
        the dataset can draw that (synthetic versions 2 and 3)."""
        base, _, part = split.partition("_occluded_part")
        if part in ("1", "2") and self.make_occluded is not None and base in self.sizes:
            return self.make_occluded(base, int(part))
        if split not in self.sizes:
            raise ValueError(
                f"Dataset {self.name!r} has no split {split!r}. "
                f"Splits: {', '.join(self.sizes)}"
            )
        return self.make(split)

    @property
    def part_names(self):
        """Masks of separately scored parts (`part1_mask`, ...), if any."""
        return tuple(k for k in self.annotations if k.startswith("part") and k[4:5].isdigit())

    def occluded(self, split, part):
        """The split with part `part` (1 or 2) painted over, where the
        dataset can draw that (synthetic versions 2 and 3); else None."""
        if self.make_occluded is None:
            return None
        return self.make_occluded(split, part)
