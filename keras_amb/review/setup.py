"""Which images a review shows: a run's own dataset, another one, or a folder."""

import os

from keras_amb.review import images as review_images


def image_set(run, dataset=None, data_dir=None, split="train", folder=None):
    """The `ImageSet` of `keras-amb review`.

    Args:
        run: an opened `keras_amb.runs.Run`.
        dataset: str or None, a `--dataset` (default: the run's own).
        data_dir: str or None, TFDS's folder (default: the run's).
        split: str, the split to review.
        folder: str or None, a folder of unlabelled images instead.
    """
    from keras_amb.data import sources
    from keras_amb.data.errors import DatasetError

    if folder is not None:
        return review_images.from_folder(folder)
    config = run.config()
    if dataset is None:
        dataset = config.get("dataset")
        if dataset is None:
            raise DatasetError(
                f"{run.name}: a bare model file names no dataset; pass --dataset or --images"
            )
    synthetic_params = config.get("synthetic") if dataset == "synthetic" else None
    if os.path.isdir(str(dataset)) and dataset not in sources.TFDS_DATASETS:
        # Not every file decoded up front: a broken one shows as an error
        # when its turn comes.
        source = sources.folder_source(dataset, check_images=False, progress=False)
    else:
        source = sources.load_source(
            dataset, data_dir=data_dir or config.get("data_dir"),
            synthetic_params=synthetic_params, progress=False,
        )
    shown = dataset if dataset in ("synthetic",) + tuple(sources.TFDS_DATASETS) \
        else os.path.abspath(dataset)
    return review_images.from_source(source, split, shown, synthetic_params)
