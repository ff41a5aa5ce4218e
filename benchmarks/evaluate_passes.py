"""`evaluate --method all` and `visualize` on N images: this code against another.

Each command runs in a fresh process, alternating between the two
installations for `--rounds` rounds, and the wall time (process start
included) is printed with the ratio. The baseline is any Python whose
`keras_amb` is the code to compare against, e.g. a venv with an editable
install of an older commit:

    git worktree add /tmp/old <commit>
    python3 -m venv /tmp/oldenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/oldenv/lib/python3.11/site-packages/deps.pth
    /tmp/oldenv/bin/pip install --no-deps -e /tmp/old
    python benchmarks/evaluate_passes.py --model saved_models/<run> --baseline /tmp/oldenv/bin/python

The images for `visualize` are the synthetic test split's first N, written
as PNG files; `evaluate` reads the same split with `--limit N`.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time


def write_images(folder, n):
    """The first `n` synthetic test images as PNGs in `folder`."""
    import numpy as np
    from PIL import Image

    from keras_amb.data import load_source

    source = load_source("synthetic", progress=False)
    os.makedirs(folder, exist_ok=True)
    for i, example in enumerate(source.examples("test").take(n)):
        image = np.asarray(example["image"]).astype("uint8")
        Image.fromarray(image).save(os.path.join(folder, f"{i:04d}.png"))


def timed(python, args):
    start = time.perf_counter()
    entry = "from keras_amb.cli.main import main; main()"
    result = subprocess.run([python, "-c", entry, *args],
                            capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{python} {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a run folder or .keras file")
    parser.add_argument("--baseline", required=True,
                        help="the Python whose keras_amb is the code to compare against")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python of this code (default: this one)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if args.images < 1 or args.rounds < 1:
        parser.error(f"--images and --rounds must be at least 1. Received: "
                     f"{args.images}, {args.rounds}")

    work = tempfile.mkdtemp(prefix="evaluate-passes-")
    images = os.path.join(work, "images")
    write_images(images, args.images)
    commands = {
        "evaluate --method all": lambda out: [
            "evaluate", "--model", args.model, "--dataset", "synthetic", "--method", "all",
            "--limit", str(args.images), "--json", "--output", out],
        "visualize": lambda out: [
            "visualize", images, "--model", args.model, "--output", out],
    }
    pythons = {"baseline": args.baseline, "this code": args.python}
    times = {(c, p): [] for c in commands for p in pythons}
    for round_ in range(args.rounds):
        for command, build in commands.items():
            for name, python in (pythons.items() if round_ % 2 == 0
                                 else reversed(pythons.items())):
                out = tempfile.mkdtemp(dir=work)
                seconds = timed(python, build(out))
                times[command, name].append(seconds)
                print(f"round {round_ + 1}: {command}, {name}: {seconds:.1f} s", flush=True)
    print(f"\n{args.images} images, {args.rounds} round(s), alternating fresh processes "
          "(wall time, process start included)\n")
    print("| command | baseline s | this code s | this code / baseline |")
    print("|---|---|---|---|")
    for command in commands:
        base, new = times[command, "baseline"], times[command, "this code"]
        ratio = sum(new) / sum(base)
        print(f"| {command} | {', '.join(f'{t:.1f}' for t in base)} | "
              f"{', '.join(f'{t:.1f}' for t in new)} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
