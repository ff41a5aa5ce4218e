"""A resumed run trusts its files only when they agree with its config.

`keras-amb train --resume` continues a run with the `config.yaml` in its
folder and the checkpoints beside it. If the config was edited since (another
backbone, image size, architecture, weights of the loss), the checkpoints
hold a different model: training the old checkpoint on the new settings
would go on silently and save a model that contradicts its config. So
before any epoch, `check_agreement` compares the models the config would
build with the files the run would load, and refuses a disagreement naming
each key; `restart_stage` sets the current stage's checkpoints aside (never
deleted) so the stage starts anew with the config as it is.
"""

import os

from keras_amb.errors import RunError
from keras_amb.model_file import read_model_file
from keras_amb.models.factory import model_arguments
from keras_amb.app.runs import timestamp
from keras_amb.arguments import architecture_name

# What an earlier stage's model (the file the next stage starts from) must
# share with the config: the network's shape and its preprocessing. Its loss
# weights are its own: editing pc_weight after the ABN finished changes only
# the stages still to train.
SHAPE_KEYS = ("backbone", "image_size", "num_classes", "class_names", "resize_ratio")


def _files_to_load(run, state, restarting):
    """`(stage, path, keys)` of each model file the resumed run would load,
    and the keys it must agree on (None: all)."""
    stages, index = state["stages"], state["stage_index"]
    files = []
    if index < len(stages) and state["completed_epochs"] > 0 and not restarting:
        files.append((stages[index], run.path("checkpoints", f"{stages[index]}-last.keras"),
                      None))
    if "abn" in stages[:index] and index < len(stages):
        files.append(("abn", run.path("abn.keras"), SHAPE_KEYS))
    return [entry for entry in files if os.path.isfile(entry[1])]


# Keys the data decides, compared whether or not config.yaml states them.
DATA_KEYS = ("num_classes", "class_names")


def disagreements(config, stage, path, class_names, resize_ratio, keys=None, stated=None):
    """`["key: config X, file Y", ...]` where the model `config` builds for
    `stage` differs from the one saved in `path`: in `keys` only, if given,
    and, if `stated` is given, only for keys config.yaml states (a key it
    lacks, from a release before the key existed, takes today's default,
    which may differ from the run's own) and the data's `DATA_KEYS`."""
    cls, expected = model_arguments(
        config.model, "abn" if stage == "abn" else "mining", class_names,
        config.data.image_size, resize_ratio,
        attention_targets=config.data.attention_targets is not None)
    saved = read_model_file(path, count_parameters=False)
    found = []
    if saved.class_name != cls.__name__ and keys is None:
        found.append(f"model: config {cls.__name__}, file {saved.class_name}")
    for key, value in expected.items():
        if keys is not None and key not in keys:
            continue
        if stated is not None and key not in stated and key not in DATA_KEYS:
            continue
        if key in saved.config and saved.config[key] != value:
            shown = (f"{len(value)} names", f"{len(saved.config[key] or [])} names") if (
                key == "class_names") else (value, saved.config[key])
            found.append(f"{key}: config {shown[0]!r}, file {shown[1]!r}")
    return found


def check_agreement(run, config, stages, class_names, resize_ratio, restarting=False):
    """Raises `RunError` unless the run's config agrees with its state and
    the model files a resume would load.

    Args:
        run: the opened `runs.Run`.
        config: its `RunConfig` (from its `config.yaml`).
        stages: the stages `config` trains (`trainer.stages_for`).
        class_names: the dataset's class names now.
        resize_ratio: the preprocessing's resize ratio.
        restarting: the current stage starts anew (its checkpoints are not
            loaded, so only earlier stages' files must agree).
    """
    state = run.state()
    config_path = run.path("config.yaml")
    # A run of 0.2 or earlier names its mining stage "proposed".
    if list(stages) != [architecture_name(s) for s in state["stages"]]:
        raise RunError(
            f"{config_path} disagrees with the run's state.json: it trains the stages "
            f"{' -> '.join(stages)}, the run was started with {' -> '.join(state['stages'])} "
            "(architecture, init_from or pretrain_epochs changed); put config.yaml back, or "
            "start a new run")
    from keras_amb.app.config import load_yaml

    stated = set(load_yaml(config_path))
    for stage, path, keys in _files_to_load(run, state, restarting):
        found = disagreements(config, stage, path, class_names, resize_ratio, keys, stated)
        if not found:
            continue
        current = stage == state["stages"][min(state["stage_index"], len(state["stages"]) - 1)]
        fix = (f"put config.yaml back, or add --restart-stage to train stage {stage!r} anew "
               "with the config as it is" if current and not restarting
               else "put config.yaml back, or start a new run")
        raise RunError(f"{config_path} disagrees with {path} ({'; '.join(found)}); {fix}")


def restart_stage(run):
    """Sets the current stage's checkpoints aside (into
    `checkpoints/replaced-<time>/`, nothing deleted) and marks the stage as
    not begun. Returns the folder they went to, or None."""
    state = run.state()
    stages, index = state["stages"], state["stage_index"]
    if index >= len(stages):
        return None
    stage = stages[index]
    folder = run.path("checkpoints")
    names = [n for n in (f"{stage}-last.keras", f"{stage}-best.keras")
             if os.path.isfile(os.path.join(folder, n))]
    aside = None
    if names:
        aside = os.path.join(folder, "replaced-" + timestamp())
        os.makedirs(aside, exist_ok=True)
        for name in names:
            os.replace(os.path.join(folder, name), os.path.join(aside, name))
    best = dict(state.get("best") or {})
    best.pop(stage, None)
    run.update_state(completed_epochs=0, best=best)
    return aside
