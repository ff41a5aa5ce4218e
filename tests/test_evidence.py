"""PC set up as its authors do, the mining-gradient switch, the logs that show
which force drives the map, the map statistics and the intervention test."""

import csv

import keras
import numpy as np
import pytest

from keras_amb import AttentionBranchNetwork
from keras_amb import AttentionMiningNetwork
from keras_amb.app import callbacks
from keras_amb import losses
from keras_amb import optimizers
from keras_amb.data import synthetic
from keras_amb.explain import evaluation
from keras_amb.explain import metrics
from keras_amb.models import gradients
from keras_amb.models import force_log
from keras_amb.models.objective import Objective
from keras_amb.models.objective import feature_statistics

from tests.test_model import SIZE
from tests.test_model import _batch
from tests.test_model import _model


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# === PC loss ===


def test_prototype_conformity_squared_distance_hand_computed():
    f = np.array([[3.0, 4.0]], "float32")
    c = np.array([[0.0, 0.0], [3.0, 0.0]], "float32")
    # d(f, c0) = 25, d(f, c1) = 16, d(c0, c1) = 9; K - 1 = 1.
    value = losses.prototype_conformity(f, [0], c, contrastive_weight=0.5, distance="squared")
    assert float(value) == pytest.approx(25 - 0.5 * (16 + 9))
    value = losses.prototype_conformity(f, [0], c, contrastive_weight=0.5)
    assert float(value) == pytest.approx(5 - 0.5 * (4 + 3))
    with pytest.raises(ValueError, match="'cosine'"):
        losses.prototype_conformity(f, [0], c, distance="cosine")


def test_centers_start_at_the_class_means_of_the_pc_features():
    model = _model(cot=False)
    x, y = _batch(8)
    found = model.initialize_centers([(x[:4], y[:4]), ({"images": x[4:]}, y[4:])])
    out = model.forward_step(x, "main", training=False)
    for name in ("perception", "attention"):
        feats = _numpy(out[f"{name}_features"])
        expected = np.stack([feats[y == k].mean(0) for k in range(4)])
        np.testing.assert_allclose(_numpy(out[f"{name}_centers"]), expected,
                                   rtol=1e-4, atol=1e-5)
    assert found["images"] == 8
    norms = np.linalg.norm(_numpy(out["perception_features"]), axis=1).mean()
    assert found["per_feature_norm"] == pytest.approx(float(norms), rel=1e-4)


def test_centers_absent_from_the_data_keep_their_values():
    model = _model(cot=False)
    before = _numpy(model.perception_centers.centers).copy()
    x, y = _batch(4)
    model.initialize_centers([(x, np.array([0, 1, 0, 1], "int32"))])
    after = _numpy(model.perception_centers.centers)
    np.testing.assert_array_equal(after[2:], before[2:])
    assert not np.allclose(after[:2], before[:2])


def _center_gradient(pc_weight):
    keras.utils.set_random_seed(0)
    model = _model(cot=False, pc_weight=pc_weight)
    x, y = _batch(8)
    variables = model.center_variables

    def loss_fn():
        return model.main_step_loss(x, y, training=False).loss

    return [_numpy(g) for g in gradients.variable_gradients(loss_fn, variables)]


def test_center_speed_does_not_depend_on_pc_weight():
    full, tenth = _center_gradient(1.0), _center_gradient(0.1)
    for a, b in zip(full, tenth):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_centers_get_no_weight_decay():
    model = _model(cot=False)
    model.compile(optimizers.SGD(0.1, weight_decay=0.5))
    centers = model.center_variables
    others = [v for v in model.trainable_variables if all(v is not c for c in centers)]
    before_c = [_numpy(v).copy() for v in centers]
    before_o = [_numpy(v).copy() for v in others]
    grads = [keras.ops.zeros(v.shape, v.dtype) for v in model.trainable_variables]
    optimizers.main_optimizer(model.optimizer).apply(grads, model.trainable_variables)
    for b, v in zip(before_c, centers):
        np.testing.assert_array_equal(b, _numpy(v))
    decayed = [not np.allclose(b, _numpy(v)) for b, v in zip(before_o, others)
               if np.abs(b).max() > 0]
    assert all(decayed)


# === eq. 5 and the complement step ===


def test_eq5_weights_and_l_am_left_out_with_cot():
    parts = {"att_loss": 1.0, "per_loss": 2.0, "pc_loss": 4.0, "amb_loss": 0.5,
             "cot_loss": -0.25, "attention_target_loss": 3.0}
    model = _model(pc_weight=0.1, amb_weight=0.01)
    terms = model.objective.terms(
        {k: v for k, v in parts.items() if k != "attention_target_loss"}, "main")
    assert terms == pytest.approx({"att_loss": 1.0, "per_loss": 2.0, "pc_loss": 0.4})
    assert model.objective.terms(parts, "complement") == {"cot_loss": -0.25}
    no_cot = _model(cot=False, pc=False, amb_weight=0.01)
    terms = no_cot.objective.terms(
        {k: parts[k] for k in ("att_loss", "per_loss", "amb_loss")}, "main")
    assert terms == pytest.approx({"att_loss": 1.0, "per_loss": 2.0, "amb_loss": 0.005})
    abn = _model(AttentionBranchNetwork, attention_target_weight=10.0)
    terms = abn.objective.terms({k: parts[k] for k in ("att_loss", "per_loss",
                                                       "attention_target_loss")}, "main")
    assert terms == pytest.approx({"att_loss": 1.0, "per_loss": 2.0,
                                   "attention_target_loss": 30.0})


def test_eq5_is_assembled_in_one_place():
    """`Objective.weights` puts L_am in eq. 5 or in the complement step, and
    the forward passes compute what those weights need and nothing else."""
    paper = Objective(amb=True, pc=True, cot=True, amb_weight=1e-4, pc_weight=0.5)
    assert paper.weights("main") == {"att_loss": 1.0, "per_loss": 1.0, "pc_loss": 0.5}
    assert paper.weights("complement") == {"cot_loss": 1.0}
    assert paper.logged("complement") == {"amb_loss", "cot_loss"}
    assert not paper.needs("main", "amb_logits") and paper.needs("eval", "amb_logits")
    mining = Objective(amb=True, amb_weight=0.01)
    assert mining.weights("main") == {"att_loss": 1.0, "per_loss": 1.0, "amb_loss": 0.01}
    assert mining.weights("complement") == {} and not mining.has_complement_step
    attention_only = Objective(amb=True, amb_gradient="attention", amb_weight=0.01,
                               area_weight=2.0)
    assert attention_only.weights("main") == {"att_loss": 1.0, "per_loss": 1.0,
                                              "area_loss": 2.0}
    assert attention_only.weights("complement") == {"amb_loss": 0.01}
    with pytest.raises(ValueError, match="'predict'"):
        paper.weights("predict")
    model = _model(pc_weight=0.5, amb_weight=1e-4, area_weight=0.0)
    assert model.objective.weights("main") == paper.weights("main")


def test_each_steps_optimizer_state_is_found_by_identity():
    model = _model(cot=True)
    model.compile(optimizers.SGD(0.1, momentum=0.9))
    dual = model.optimizer
    values = [f"value of {v.path}" for v in dual.variables]
    states = optimizers.step_states(dual, values)
    assert states["main"] == [f"value of {v.path}" for v in dual.optimizer.variables]
    assert states["complement"] == [
        f"value of {v.path}" for v in dual.complement_optimizer.variables]
    assert optimizers.join_step_states(dual, states) == values
    assert len(states["complement"]) < len(states["main"])  # built on fewer weights
    plain = _model(cot=False, pc=False, amb_weight=0.01, amb_gradient="all")
    plain.compile(optimizers.SGD(0.1))
    assert list(optimizers.step_states(plain.optimizer, [1] * len(
        plain.optimizer.variables))) == ["main"]
    with pytest.raises(ValueError, match="DualOptimizer"):
        optimizers.step_optimizer(plain.optimizer, "complement")


def test_main_step_loss_sums_the_weighted_terms():
    model = _model(cot=False, pc=True, pc_weight=0.1, amb_weight=0.5)
    x, y = _batch(8)
    total, terms, parts, _ = model.main_step_loss(x, y, training=False)
    assert sorted(terms) == ["amb_loss", "att_loss", "pc_loss", "per_loss"]
    assert float(terms["pc_loss"]) == pytest.approx(0.1 * float(parts["pc_loss"]), rel=1e-6)
    expected = (float(parts["att_loss"]) + float(parts["per_loss"])
                + 0.1 * float(parts["pc_loss"]) + 0.5 * float(parts["amb_loss"]))
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_attention_only_mining_moves_only_the_map_weights():
    model = _model(cot=False, pc=False, amb_weight=1.0, amb_gradient="attention")
    assert model.has_complement_step
    assert {id(v) for v in model.complement_variables} == {
        id(v) for v in model.attention_branch.map_variables}
    x, y = _batch(8)
    out = model.forward_step(x, "main", training=True)
    assert "amb_logits" not in out  # L_am is not in the main step
    loss, terms, parts, _ = model.complement_step_loss(x, y)
    assert list(terms) == ["amb_loss"] and "loss" not in parts
    assert float(loss) == pytest.approx(float(parts["amb_loss"]))
    paper = _model(cot=True, pc=False)
    names = {v.path for v in paper.complement_variables}
    assert any("perception_branch" in n for n in names)
    with pytest.raises(ValueError, match="'sideways'"):
        _model(amb_gradient="sideways")


def test_attention_only_train_step_runs_and_saves():
    model = _model(cot=True, pc=True, amb_gradient="attention")
    model.compile(optimizers.SGD(0.01))
    x, y = _batch(8)
    perception = [_numpy(v).copy() for v in model.perception_branch.trainable_variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["cot_loss"]) and np.isfinite(logs["loss"])
    assert any(not np.allclose(b, _numpy(v))
               for b, v in zip(perception, model.perception_branch.trainable_variables))
    assert model.get_config()["amb_gradient"] == "attention"
    restored = AttentionMiningNetwork.from_config(model.get_config())
    assert restored.amb_gradient == "attention" and restored.pc_distance == "euclidean"


# === what history.csv shows ===


def test_feature_statistics_are_logged():
    model = _model(AttentionBranchNetwork)
    model.compile(optimizers.SGD(0.01))
    x, y = _batch(8)
    logs = model.train_on_batch(x, y, return_dict=True)
    out = model.forward_step(x, "main", training=False)
    assert 0.0 <= logs["per_feature_zero_fraction"] <= 1.0
    assert logs["per_feature_norm"] > 0 and logs["att_feature_norm"] > 0
    features = np.zeros((2, 3), "float32")
    features[0] = [3.0, 4.0, 0.0]
    stats = {k: float(v) for k, v in feature_statistics(
        {"perception_features": features}).items()}
    assert stats == pytest.approx({"per_feature_norm": 2.5,
                                   "per_feature_zero_fraction": 4 / 6})
    assert "perception_features" in out


def test_term_gradient_norms_name_each_force_on_the_map():
    model = _model(cot=True, pc=True, pc_weight=0.5)
    model.compile(optimizers.SGD(0.01))
    x, y = _batch(8)
    norms = force_log.term_gradient_norms(model, (x, y), model.attention_branch.map_variables)
    assert set(norms) == {"att_loss", "per_loss", "pc_loss", "cot_loss"}
    assert all(np.isfinite(v) and v >= 0 for v in norms.values())
    assert norms["per_loss"] > 0 and norms["cot_loss"] > 0
    # One forward pass per step serves every term: each norm is that of the
    # term's own weighted gradient, taken alone (so a term's weight scales its
    # force: the weights themselves are pinned by test_eq5_weights_...).
    from keras_amb.layers.batch_normalization import frozen_statistics

    for step, name in (("main", "att_loss"), ("main", "pc_loss"), ("complement", "cot_loss")):
        def alone(step=step, name=name):
            method = model.main_step_loss if step == "main" else model.complement_step_loss
            with frozen_statistics():
                return method(x, y, training=True).terms[name]

        grads = gradients.variable_gradients(alone, model.attention_branch.map_variables)
        expected = np.sqrt(sum(np.sum(np.square(_numpy(g))) for g in grads))
        assert norms[name] == pytest.approx(expected, rel=1e-4), name


def test_history_keeps_an_older_files_columns(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("stage,epoch,loss,top1\nabn,1,2.0,0.5\n")
    callbacks.append_history(str(path), {"stage": "abn", "epoch": 2, "loss": 1.0,
                                         "top1": 0.6, "per_feature_norm": 3.0})
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["top1"] == "0.6"
    assert "per_feature_norm" not in rows[1]


def test_collapse_warning_fires_once_below_half():
    lines = []
    warning = callbacks.FeatureCollapseWarning(lines.append, {"per_feature_norm": 4.0})
    warning.on_epoch_end(0, {"per_feature_norm": 2.5, "att_feature_norm": 1.0})
    assert lines == []
    warning.on_epoch_end(1, {"per_feature_norm": 1.9, "att_feature_norm": 0.9})
    warning.on_epoch_end(2, {"per_feature_norm": 1.0, "att_feature_norm": 0.4})
    assert len(lines) == 2
    assert "per_feature_norm fell from 4 to 1.9" in lines[0]
    assert "att_feature_norm fell from 1 to 0.4" in lines[1]


# === maps and the intervention test ===


@pytest.mark.backend_independent
def test_map_statistics_hand_computed():
    maps = np.zeros((2, 2, 2), "float32")
    maps[0] = 1.0          # uniform
    maps[1, 0, 0] = 1.0    # one cell
    masks = np.zeros((2, 4, 4), "uint8")
    masks[:, :2, :2] = 1   # the top-left quarter
    stats = metrics.map_statistics(maps, masks)
    np.testing.assert_allclose(stats["map_entropy"], [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(stats["map_area_above_half"], [1.0, 0.25])
    assert stats["map_concentration"][0] == pytest.approx(1.0, abs=1e-5)
    assert stats["map_concentration"][1] > 1.5
    density = metrics.part_density([np.array([0.5, 0.0])], [masks])
    np.testing.assert_allclose(density[0], [2.0, 0.0])


def test_intervention_top1_replaces_the_map():
    model = _model(AttentionBranchNetwork, bypass=False)
    x, y = _batch(6)
    out = model.predict(x, verbose=0)
    masks = np.zeros((6, SIZE, SIZE), "uint8")
    masks[:, 8:24, 8:24] = 1
    result = evaluation.intervention_top1(model, x, y, out["attention"], masks)
    assert set(result) == {f"top1_attention_{n}" for n in evaluation.INTERVENTIONS}
    inverted = _numpy(model.classify_with_attention(x, 1.0 - out["attention"]))
    np.testing.assert_array_equal(result["top1_attention_inverted"],
                                  np.argmax(inverted, -1) == y)
    own = _numpy(model.classify_with_attention(x, out["attention"]))
    np.testing.assert_allclose(own, out["logits"], rtol=1e-4, atol=1e-4)


# === synthetic version 3 ===


@pytest.mark.backend_independent
def test_synthetic_v3_cues_name_the_class_and_occlusion_is_local():
    config = synthetic.make_config({"version": "3", "train_size": 12})
    data = synthetic.make_split(config, "train")
    again = synthetic.make_split(config, "train")
    np.testing.assert_array_equal(data["image"], again["image"])
    # Frozen: a fingerprint of version 3's first training images.
    assert int(data["image"][:4].astype(np.int64).sum()) == V3_FINGERPRINT
    names = synthetic.names_for(config)
    assert len(set(names)) == 12
    wings = {n.split("_wing_")[0] for n in names}
    tails = {n.split("_wing_")[1] for n in names}
    assert len(wings) == 12 and len(tails) == 12  # each cue alone names the class
    for part in (1, 2):
        hidden = synthetic.make_split(config, "train", occlude=part)
        mask = data[f"part{part}_mask"].astype(bool)
        changed = (hidden["image"] != data["image"]).any(-1)
        assert changed[~mask].sum() == 0 and changed[mask].mean() > 0.5
        np.testing.assert_array_equal(hidden["label"], data["label"])
    # The easy cue is larger than the hard one.
    assert data["part1_mask"].mean() > 2 * data["part2_mask"].mean()
    with pytest.raises(ValueError, match="tail_size=0.5"):
        synthetic.make_config({"version": "3", "tail_size": 0.5})


V3_FINGERPRINT = 6691963


@pytest.mark.backend_independent
def test_occluded_splits_are_datasets_by_name():
    from keras_amb.data import sources

    source = sources.synthetic_source(version="3", val_size=6, train_size=6, test_size=6)
    plain = list(source.examples("val").as_numpy_iterator())
    hidden = list(source.examples("val_occluded_part1").as_numpy_iterator())
    assert len(hidden) == len(plain) == 6
    # The occluded copies have no distractors: against the same images drawn
    # without them, only the hidden part changed; against the originals,
    # nothing on the object changed but that part.
    config = synthetic.make_config({"version": "3", "val_size": 6})
    clean = synthetic.make_split(config, "val", distractors=False)
    removed = 0
    for i, (a, b) in enumerate(zip(plain, hidden)):
        assert a["label"] == b["label"]
        changed = (clean["image"][i] != b["image"]).any(-1)
        assert changed.any() and not changed[a["part1_mask"] == 0].any()
        on_object = (a["object_mask"] > 0) & (a["part1_mask"] == 0)
        assert not (a["image"] != b["image"]).any(-1)[on_object].any()
        removed += int((a["image"] != clean["image"][i]).any(-1)[a["object_mask"] == 0].sum())
    assert removed > 0  # some distractor was painted and is gone
    with pytest.raises(ValueError, match="no split 'val_occluded_part3'"):
        source.examples("val_occluded_part3")
