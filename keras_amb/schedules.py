"""Learning-rate schedules, by epoch index within a stage (so resumable)."""

import math

NAMES = ("step", "cosine", "constant")


def step_epochs(milestones, epochs):
    """The epochs (0-based) at whose start a step schedule drops the rate.

    A milestone `m` (a fraction of the stage) falls on the first epoch that
    starts at or after `m` of the stage: `ceil(m * epochs)`. Milestones past
    the last epoch never fire, and each epoch drops at most once, so a short
    stage keeps a sane rate: `[0.5, 0.75]` drops once in a 2-epoch stage, at
    epochs 2 and 3 of 4, at 150 and 225 of 300.

    Example:
    >>> step_epochs([0.5, 0.75], 2), step_epochs([0.5, 0.75], 4)
    ([1], [2, 3])
    """
    drops = {math.ceil(m * epochs - 1e-9) for m in milestones}
    return sorted(e for e in drops if 0 < e < epochs)


def learning_rate_at(schedule, base, epoch, epochs):
    """The learning rate of epoch `epoch` (0-based) of a stage of `epochs`.

    Args:
        schedule: dict, a config's `lr_schedule`: `{"name": "step",
            "milestones": [...], "gamma": 0.1}`, `{"name": "cosine"}` or
            `{"name": "constant"}`.
        base: float, the base learning rate.
        epoch: int, the epoch index within the stage.
        epochs: int, the stage's length.

    Example:
    >>> schedule = {"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1}
    >>> [round(learning_rate_at(schedule, 1.0, e, 4), 4) for e in range(4)]
    [1.0, 1.0, 0.1, 0.01]
    """
    name = schedule["name"]
    if name not in NAMES:
        raise ValueError(f"`name` must be one of {NAMES}. Received: name={name!r}")
    if name == "constant":
        return base
    if name == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    passed = sum(epoch >= e for e in step_epochs(schedule.get("milestones", []), epochs))
    return base * schedule.get("gamma", 0.1) ** passed
