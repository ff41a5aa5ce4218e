import math

import numpy as np
import pytest
from keras import ops

from keras_amb import losses
from keras_amb.models.gradients import input_gradient


def _logits(probabilities):
    return np.log(np.asarray(probabilities, dtype="float32"))


def test_complement_entropy_normalised_by_wrong_classes():
    # p = [0.5, 0.3, 0.2], g = 0: q = [0.6, 0.4] over the wrong classes.
    value = losses.complement_entropy(np.array([0]), _logits([[0.5, 0.3, 0.2]]))
    expected = (0.6 * math.log(0.6) + 0.4 * math.log(0.4)) / 3
    assert float(value) == pytest.approx(expected, abs=1e-5)


def test_complement_entropy_zero_true_class_uses_raw_probabilities():
    value = losses.complement_entropy(
        np.array([0]), _logits([[0.5, 0.3, 0.2]]), zero_true_class=True
    )
    expected = (0.3 * math.log(0.3) + 0.2 * math.log(0.2)) / 3
    assert float(value) == pytest.approx(expected, abs=1e-5)


def test_complement_entropy_averages_over_batch_and_classes():
    logits = _logits([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    value = losses.complement_entropy(np.array([0, 2]), logits)
    first = 0.6 * math.log(0.6) + 0.4 * math.log(0.4)
    second = 2 * 0.5 * math.log(0.5)
    assert float(value) == pytest.approx((first + second) / 6, abs=1e-5)


def test_complement_entropy_is_lowest_when_wrong_classes_are_flat():
    flat = losses.complement_entropy(np.array([0]), _logits([[0.4, 0.2, 0.2, 0.2]]))
    peaked = losses.complement_entropy(np.array([0]), _logits([[0.4, 0.5, 0.05, 0.05]]))
    assert float(flat) < float(peaked)


def test_attention_mining_loss_is_mean_true_class_probability():
    logits = _logits([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    value = losses.attention_mining_loss(np.array([1, 2]), logits)
    assert float(value) == pytest.approx((0.3 + 0.8) / 2, abs=1e-6)


def test_prototype_conformity_hand_computed():
    centers = np.array([[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]], dtype="float32")
    features = np.array([[0.0, 0.0]], dtype="float32")
    # a = ||f - c1|| = 0; b = 5, 10; c = ||c1 - c0||, ||c1 - c2|| = 5, 10.
    value = losses.prototype_conformity(features, np.array([1]), centers, 1.0)
    assert float(value) == pytest.approx(0.0 - (5 + 10 + 5 + 10) / 2, abs=1e-4)
    small = losses.prototype_conformity(features, np.array([1]), centers, 1e-4)
    assert float(small) == pytest.approx(-1e-4 * 30 / 2, abs=1e-6)


def test_prototype_conformity_mean_over_batch():
    centers = np.array([[0.0, 0.0], [3.0, 4.0]], dtype="float32")
    features = np.array([[0.0, 1.0], [3.0, 4.0]], dtype="float32")
    value = losses.prototype_conformity(features, np.array([0, 1]), centers, 0.0)
    assert float(value) == pytest.approx((1.0 + 0.0) / 2, abs=1e-4)


def test_prototype_conformity_gradient_is_finite_at_a_center():
    centers = np.array([[1.0, 2.0], [0.0, 0.0]], dtype="float32")

    def fn(f):
        return losses.prototype_conformity(f, np.array([0]), ops.convert_to_tensor(centers), 1.0)

    g = ops.convert_to_numpy(input_gradient(fn, ops.convert_to_tensor(np.array([[1.0, 2.0]], "float32"))))
    assert g.shape == (1, 2) and np.all(np.isfinite(g))


def test_attention_target_loss_resizes_target():
    attention = np.full((1, 2, 2), 0.5, dtype="float32")
    target = np.ones((1, 4, 4), dtype="float32")
    assert float(losses.attention_target_loss(attention, target, "l2")) == pytest.approx(0.25)
    assert float(losses.attention_target_loss(attention, target, "l1")) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'l3'"):
        losses.attention_target_loss(attention, target, "l3")


def test_attention_target_loss_weights_leave_out_images_without_a_map():
    attention = np.stack([np.zeros((2, 2)), np.ones((2, 2))]).astype("float32")
    target = np.zeros((2, 2, 2), dtype="float32")
    weighted = losses.attention_target_loss(attention, target, weights=np.array([1.0, 0.0]))
    assert float(weighted) == pytest.approx(0.0)
    assert float(losses.attention_target_loss(attention, target)) == pytest.approx(0.5)


def test_attention_target_loss_divides_by_the_weights_sum_not_the_batch_size():
    # Per-image distances 0, 1, 1; the second image has no map. The weights'
    # sum (2) gives 0.5; the batch size (3) would give 1/3.
    attention = np.stack([np.zeros((2, 2)), np.ones((2, 2)), np.ones((2, 2))]).astype("float32")
    target = np.zeros((3, 2, 2), dtype="float32")
    loss = losses.attention_target_loss(attention, target, weights=np.array([1.0, 0.0, 1.0]))
    assert float(loss) == pytest.approx(0.5)
    # A sample weight of 2 on the third image: (0 + 2) / 3.
    loss = losses.attention_target_loss(attention, target, weights=np.array([1.0, 0.0, 2.0]))
    assert float(loss) == pytest.approx(2.0 / 3.0)
    # No image with a map: 0, not 0 / 0.
    loss = losses.attention_target_loss(attention, target, weights=np.zeros(3))
    assert float(loss) == pytest.approx(0.0)


def test_every_loss_weights_examples_as_keras_does():
    # sum(w * l) / N: a weight of 0 leaves an example out, 2 counts it twice.
    logits = _logits([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    y = np.array([0, 2])
    w = np.array([0.0, 2.0], "float32")
    for fn in (losses.cross_entropy, losses.attention_mining_loss,
               lambda y, l, sample_weight=None: losses.complement_entropy(
                   y, l, zero_true_class=True, sample_weight=sample_weight)):
        per_example = [float(fn(y[i : i + 1], logits[i : i + 1])) for i in range(2)]
        weighted = float(fn(y, logits, sample_weight=w))
        assert weighted == pytest.approx((0 * per_example[0] + 2 * per_example[1]) / 2, abs=1e-5)
    centers = np.array([[0.0, 0.0], [3.0, 4.0]], dtype="float32")
    features = np.array([[0.0, 1.0], [3.0, 4.0]], dtype="float32")
    value = losses.prototype_conformity(features, np.array([0, 1]), centers, 0.0,
                                        sample_weight=np.array([3.0, 1.0]))
    assert float(value) == pytest.approx((3 * 1.0 + 1 * 0.0) / 2, abs=1e-4)
