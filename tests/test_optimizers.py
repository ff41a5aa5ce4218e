import keras
import numpy as np
import pytest

from keras_amb import optimizers
from keras_amb import schedules


def _two_steps(optimizer, w0=1.0, gradient=lambda w: w):
    """Two `apply` steps on one scalar weight with gradient `gradient(w)`."""
    variable = keras.Variable(np.array([w0], "float32"))
    optimizer.build([variable])
    for _ in range(2):
        w = keras.ops.convert_to_numpy(variable)
        optimizer.apply([keras.ops.convert_to_tensor(gradient(w).astype("float32"))], [variable])
    return float(keras.ops.convert_to_numpy(variable)[0])


def test_sgd_weight_decay_is_coupled_as_in_pytorch():
    # PyTorch SGD(lr=0.1, momentum=0.9, weight_decay=0.01) on L = w^2 / 2:
    # g1 = 1 + 0.01 = 1.01, buf1 = 1.01, w1 = 1 - 0.101 = 0.899;
    # g2 = 0.899 * 1.01 = 0.90799, buf2 = 0.9 * 1.01 + 0.90799 = 1.81699,
    # w2 = 0.899 - 0.181699 = 0.717301.
    coupled = _two_steps(optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01))
    assert coupled == pytest.approx(0.717301, abs=1e-6)
    # Keras's decoupled decay only shrinks w by lr * wd before each step, and
    # never enters the momentum: w1 = 0.999 - 0.1 = 0.899,
    # w2 = 0.899 * 0.999 + (0.9 * -0.1 - 0.1 * 0.899) = 0.718201.
    decoupled = _two_steps(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01))
    assert decoupled == pytest.approx(0.718201, abs=1e-6)


def test_adam_weight_decay_is_coupled_and_adamw_decoupled():
    # With a zero loss gradient, Adam's coupled decay is the whole gradient
    # (its first step moves the weight by lr, whatever the decay); AdamW only
    # shrinks the weight by lr * wd per step.
    adam = _two_steps(optimizers.Adam(0.1, weight_decay=0.01), gradient=lambda w: 0 * w)
    assert adam == pytest.approx(0.8, abs=1e-3)
    adamw = _two_steps(keras.optimizers.AdamW(0.1, weight_decay=0.01), gradient=lambda w: 0 * w)
    assert adamw == pytest.approx((1 - 0.001) ** 2, abs=1e-6)


def test_make_optimizer_covers_every_name():
    spec = {"learning_rate": 0.2, "momentum": 0.5, "weight_decay": 1e-3}
    sgd = optimizers.make_optimizer(dict(spec, name="sgd"))
    adam = optimizers.make_optimizer(dict(spec, name="adam"))
    adamw = optimizers.make_optimizer(dict(spec, name="adamw"))
    assert isinstance(sgd, optimizers.SGD) and sgd.momentum == 0.5
    assert sgd.coupled_weight_decay == 1e-3 and sgd.weight_decay is None
    assert isinstance(adam, optimizers.Adam) and adam.coupled_weight_decay == 1e-3
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 1e-3
    for optimizer in (sgd, adam, adamw):
        assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="'rmsprop'"):
        optimizers.make_optimizer({"name": "rmsprop", "learning_rate": 0.1})
    with pytest.raises(ValueError, match="-1"):
        optimizers.SGD(0.1, weight_decay=-1)


def test_coupled_optimizers_survive_serialization():
    for optimizer in (optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4),
                      optimizers.Adam(1e-3, weight_decay=5e-4)):
        clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(clone) is type(optimizer)
        assert clone.coupled_weight_decay == optimizer.coupled_weight_decay


def test_step_schedule_is_sane_at_any_length():
    schedule = {"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1}
    rates = lambda n: [schedules.learning_rate_at(schedule, 1.0, e, n) for e in range(n)]
    assert rates(1) == [1.0]
    assert rates(2) == pytest.approx([1.0, 0.1])  # one drop, not 100x after epoch 1
    assert rates(3) == pytest.approx([1.0, 1.0, 0.1])
    assert rates(4) == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert schedules.step_epochs([0.5, 0.75], 300) == [150, 225]


def test_cosine_and_constant_schedules():
    cosine = {"name": "cosine"}
    values = [schedules.learning_rate_at(cosine, 0.4, e, 4) for e in range(4)]
    assert values == pytest.approx([0.4, 0.4 * (1 + np.cos(np.pi / 4)) / 2, 0.2,
                                    0.4 * (1 + np.cos(3 * np.pi / 4)) / 2])
    assert schedules.learning_rate_at({"name": "constant"}, 0.3, 7, 8) == 0.3
    with pytest.raises(ValueError, match="'linear'"):
        schedules.learning_rate_at({"name": "linear"}, 0.3, 0, 8)
