"""The cost of the per-epoch force log (`map_grad_*` in history.csv).

Times `train_steps.term_gradient_norms` on the quickstart's proposed model
(resnet_tiny, 64 px, 8 classes, AMB + PC + COT) and a training batch of 32,
as `MapGradientNorms` calls it at the end of every epoch; the first call
(tracing, allocation) is reported apart. Run it under each code version in
alternating fresh processes; `--code DIR` puts DIR first on the path.

    python benchmarks/force_log.py --rounds 2 --code /tmp/old-checkout --code .
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here

CHILD = r"""
import json, sys, time
import numpy as np
import keras
from keras_amb import AttentionMiningNetwork, optimizers
from keras_amb.models import train_steps
keras.utils.set_random_seed(0)
model = AttentionMiningNetwork(num_classes=8, backbone="resnet_tiny", image_size=64)
model.compile(optimizers.SGD(0.05, momentum=0.9))
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (32, 64, 64, 3)).astype("float32")
y = (np.arange(32) % 8).astype("int32")
variables = model.attention_branch.map_variables
start = time.perf_counter()
first = train_steps.term_gradient_norms(model, (x, y), variables)
first_s = time.perf_counter() - start
times = []
for _ in range(CALLS):
    start = time.perf_counter()
    norms = train_steps.term_gradient_norms(model, (x, y), variables)
    times.append(time.perf_counter() - start)
print(json.dumps({"first": first_s, "median": float(np.median(times)),
                  "norms": {k: round(v, 5) for k, v in sorted(norms.items())}}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", action="append", required=True,
                        help="a checkout to time (repeat to compare)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args(argv)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    print(f"backend {env.get('KERAS_BACKEND', 'tensorflow')}; {args.calls} calls after the "
          f"first, median; fresh processes, alternating, {args.rounds} rounds")
    for round_ in range(1, args.rounds + 1):
        for code in args.code:
            done = subprocess.run(
                [sys.executable, "-c", CHILD.replace("CALLS", str(args.calls))],
                capture_output=True, text=True,
                env=dict(env, PYTHONPATH=os.path.abspath(code)), cwd=os.path.abspath(code))
            if done.returncode != 0:
                print(done.stderr[-2000:])
                raise SystemExit(1)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"round {round_} {code}: {result['median']:.3f} s per call "
                  f"(first {result['first']:.2f} s) {result['norms']}", flush=True)


if __name__ == "__main__":
    main()
