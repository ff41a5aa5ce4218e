import json
import os
import shutil

import numpy as np
import pytest

from keras_amb.app import ablation
from keras_amb.app import ablation_report
from keras_amb.app.run_config import ModelConfig
from keras_amb.app.run_config import RunConfig
from tests.conftest import keras_amb_cli
from tests.conftest import keras_amb_cli_here


def _run(per_image):
    return {"per_image": per_image, **{k: float(np.mean(v)) for k, v in per_image.items()}}


def test_paired_difference_and_its_bootstrap_interval():
    rng = np.random.default_rng(0)
    base = [_run({"top1": rng.integers(0, 2, 200).astype(float)}) for _ in range(3)]
    better = [_run({"top1": np.minimum(b["per_image"]["top1"] + (rng.random(200) < 0.3), 1)})
              for b in base]
    diff = ablation_report.paired_difference(better, base, "top1")
    expected = np.mean([np.mean(v["per_image"]["top1"] - b["per_image"]["top1"])
                        for v, b in zip(better, base)])
    assert diff["mean"] == pytest.approx(expected)
    assert diff["images"] == 600 and diff["seeds"] == 3
    low, high = diff["ci95"]
    assert 0 < low < diff["mean"] < high
    # Over seeds: each seed's mean difference, and Student's t interval of
    # their mean (t(2) = 4.303).
    per_seed = [np.mean(v["per_image"]["top1"] - b["per_image"]["top1"])
                for v, b in zip(better, base)]
    np.testing.assert_allclose(diff["per_seed"], per_seed)
    half = 4.303 * np.std(per_seed, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(diff["seed_ci95"], [np.mean(per_seed) - half,
                                                    np.mean(per_seed) + half], rtol=1e-6)
    assert ablation_report.paired_difference(better[:1], base[:1], "top1")["seed_ci95"] is None
    # The same models against themselves: a difference of exactly 0.
    same = ablation_report.paired_difference(base, base, "top1")
    assert same["mean"] == 0 and same["ci95"] == [0.0, 0.0]
    # A noise-only difference: the interval spans 0.
    noise = [_run({"top1": rng.integers(0, 2, 200).astype(float)}) for _ in range(3)]
    low, high = ablation_report.paired_difference(noise, base, "top1")["ci95"]
    assert low < 0 < high
    assert ablation_report.paired_difference(better, base, "no_such_metric") is None


def test_summary_table_and_report(tmp_path):
    rng = np.random.default_rng(1)
    results = {
        name: [_run({m: rng.random(50) for m in ("top1", "score", "coverage_both_parts",
                                                   "top1_occluded_part1", "top1_occluded_part2")})
               for _ in range(2)]
        for name in ("ABN", "AMB", "AMB + PC + COT")
    }
    table = ablation_report.summarise(results)
    assert table["AMB"]["top1"]["n"] == 2
    assert table["AMB"]["top1"]["mean"] == pytest.approx(
        np.mean([r["top1"] for r in results["AMB"]]))
    assert "vs_abn" not in table["ABN"] and "top1" in table["AMB"]["vs_abn"]
    config = RunConfig.from_dict({"dataset": "synthetic", "weights": None,
                                  "backbone": "resnet_tiny"})
    text = ablation_report.write_report(table, config, str(tmp_path))
    assert "both parts covered" in text and "Paired difference to ABN" in text
    assert "The paper's numbers are not shown" in text
    for name in ("ablation.md", "ablation.json", "ablation.png"):
        assert os.path.getsize(tmp_path / name) > 100, name


def test_paper_numbers_only_beside_the_papers_setup():
    paper, note = ablation_report.paper_comparison(
        "caltech_birds2010", ModelConfig(weights=None, backbone="resnet50_official"))
    assert paper["ABN"][0] == 31.68 and note == ""
    paper, note = ablation_report.paper_comparison(
        "caltech_birds2010", ModelConfig(weights="imagenet", backbone="resnet50"))
    assert paper is None and "from scratch" in note and "caltech_birds2010_paper" in note
    paper, note = ablation_report.paper_comparison(
        "stanford_dogs", ModelConfig(weights=None, backbone="resnet_small"))
    assert paper is None and "ResNet-50" in note


TINY_V2 = """\
dataset: synthetic
synthetic: {version: "2", num_classes: 4, image_size: 32, train_size: 64, val_size: 16, test_size: 24}
backbone: resnet_tiny
image_size: 32
batch_size: 16
attention_images: 0
"""


@pytest.mark.backend_independent("torch")
@pytest.mark.slow
def test_ablate_end_to_end_and_resume(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_V2)
    out = tmp_path / "ablation"
    # --limit 8 keeps each evaluation (curves, RISE, occlusions,
    # interventions) short.
    args = ["ablate", "--config", str(config), "--seeds", "1", "--epochs", "1",
            "--pretrain-epochs", "1", "--limit", "8", "--output", str(out)]
    result = keras_amb_cli(args)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(out / "ablation.json"))
    names = [name for name, _ in ablation.VARIANTS]
    assert list(report["table"]) == names
    for name in names:
        assert report["table"][name]["top1"]["n"] == 1
        assert "coverage_both_parts" in report["table"][name]
    assert "top1" in report["table"]["AMB + PC + COT"]["vs_abn"]
    assert os.path.getsize(out / "ablation.png") > 1000
    assert "Paired difference to ABN" in result.stdout
    # Rerun after losing a variant and an evaluation: the lost variant is
    # trained again, the lost evaluation redone, everything else reused.
    os.remove(out / "seed0-amb-pc" / "ablation-evaluation.json")
    shutil.rmtree(out / "seed0-amb")
    resumed = keras_amb_cli_here(args + ["--json"])  # in this process: started just above
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert log.count("Stage 'mining'") == 1 and "Stage 'abn'" not in log  # only AMB trains
    assert (out / "seed0-amb" / "model.keras").is_file()
    assert (out / "seed0-amb-pc" / "ablation-evaluation.json").is_file()
    again = json.loads(resumed.stdout)
    assert again["table"]["ABN"]["top1"] == report["table"]["ABN"]["top1"]
    # The redone evaluation of the same model gives the same accuracy.
    assert again["table"]["AMB + PC"]["top1"] == report["table"]["AMB + PC"]["top1"]
