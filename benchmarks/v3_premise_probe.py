"""The v3 premise under changed cues: does ABN's map show that it leans on the easy cue?

Evidence II's premise has three conditions on an ABN trained on synthetic
v3 (benchmarks/results/evidence_synthetic_v3.md): hiding the easy cue costs
most of its accuracy, hiding the hard cue costs little, and the map's
density on the easy cue is several times the hard cue's. The released v3
meets the first two; its density ratio is 1.4. This script trains one ABN
per setting of the data's cue parameters (`synthetic:` keys of
`configs/synthetic_v3.yaml`; the method is never changed), evaluates it on
the validation split and prints the three conditions, so a data change can
be chosen before the ablation is run again on it.

    python benchmarks/v3_premise_probe.py --output /tmp/probe \\
        --setting released --setting wing_size=0.4 --setting distractors=3,wing_size=0.4 \\
        --setting image_size=128
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _setting(text):
    """`released` or `key=value,key=value` over the `synthetic:` keys."""
    if text == "released":
        return text, {}
    params = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value, got {pair!r}")
        params[key.strip()] = float(value) if "." in value else int(value)
    return text, params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", type=_setting, action="append", required=True,
                        help="'released', or synthetic keys to change, e.g. wing_size=0.4")
    parser.add_argument("--epochs", type=int, default=12, help="ABN epochs (v3's pre-training)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    from keras_amb import config as amb_config
    from keras_amb import runs
    from keras_amb import trainer
    from keras_amb.data import sources
    from keras_amb.explain import evaluation

    rows = []
    for name, params in args.setting:
        start = time.time()
        overrides = {"architecture": "abn", "epochs": args.epochs, "seed": args.seed}
        overrides.update({f"synthetic.{k}": v for k, v in params.items()})
        if "image_size" in params:
            # The drawn size and the model's input size change together (the
            # cues keep their size relative to the image; the backbone's
            # receptive field shrinks relative to them).
            overrides["image_size"] = params["image_size"]
        base = amb_config.resolve("synthetic_v3", overrides)
        run_dir = os.path.join(args.output, name.replace("=", "-").replace(",", "_"))
        if not os.path.isfile(os.path.join(run_dir, "model.keras")):
            trainer.train(base, run_dir=run_dir, verbose=0, log=lambda line: None)
        source = sources.source_for_data(base.data, progress=False)
        result = evaluation.evaluate(runs.Run.open(run_dir).load_model(), source, "val",
                                     progress=False)
        row = {k: result[k] for k in ("top1", "top1_occluded_part1", "top1_occluded_part2",
                                      "density_part1", "density_part2", "map_entropy")}
        row.update(setting=name, seconds=round(time.time() - start))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| setting | top-1 % | easy cue hidden | hard cue hidden | density easy / hard "
          "| ratio | map entropy |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {100 * r['top1']:.1f} | {100 * r['top1_occluded_part1']:.1f} "
              f"| {100 * r['top1_occluded_part2']:.1f} | {r['density_part1']:.2f} / "
              f"{r['density_part2']:.2f} | {r['density_part1'] / r['density_part2']:.2f} "
              f"| {r['map_entropy']:.3f} |")


if __name__ == "__main__":
    main()
