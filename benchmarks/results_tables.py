"""The results tables of the README and the docs, generated from the
committed JSON under `benchmarks/results/` so that no number in them is
copied by hand.

A table sits between two markers in a Markdown file:

    <!-- results table: maps_v1 (python benchmarks/results_tables.py --write) -->
    | ... |
    <!-- end of results table -->

`--write` rewrites every marked table from its JSON; `--check` (what the
test suite runs) exits 1 and names the file where a table differs.

    python benchmarks/results_tables.py --write
"""

import argparse
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# Only the interval helper is needed: not the models (nor TensorFlow).
os.environ.setdefault("KERAS_AMB_DEFER_IMPORTS", "1")

from keras_amb.app.ablation_report import t_interval  # noqa: E402

RESULTS = os.path.join(REPO, "benchmarks", "results")
FILES = ("README.md", os.path.join("docs", "evidence.md"))

# Section 4 of the maps issue on synthetic v1: (row label, the report's
# paired line, scale, sign) per row; columns are variants.
MAPS_V1 = {
    "json": "maps_synthetic_v1.json",
    "columns": (("paper", "paper's objective"), ("area-attn", "the default")),
    "rows": (
        ("pointing game, minus Grad-CAM's", "pointing: A - own Grad-CAM", 1),
        ("energy inside the object, minus Grad-CAM's",
         "energy in object: A - own Grad-CAM", 1),
        ("the same, both maps min-max normalised",
         "energy in object, min-max maps: A - own Grad-CAM", 1),
        ("RISE Score, minus CAM's", "RISE Score: A - own CAM", 1),
        ("top-1 lost with another image's map (points)",
         "top-1 - top-1 with shuffled A (points)", 100),
        ("top-1 minus ABN's (points)", "top-1 - ABN's top-1 (points)", 100),
    ),
}
TABLES = {"maps_v1": MAPS_V1}
START = re.compile(r"<!-- results table: (\w+) [^>]*-->\n")
END = "<!-- end of results table -->"


def cell(values, scale):
    """Mean ± the 95% t-interval over seeds of `values * scale`."""
    mean, half = t_interval([None if v is None else v * scale for v in values])
    digits = 1 if scale != 1 else 3
    text = f"{mean:+.{digits}f}"
    return text + (f" ± {half:.{digits}f}" if half is not None else "")


def render(name):
    spec = TABLES[name]
    with open(os.path.join(RESULTS, spec["json"]), encoding="utf-8") as f:
        paired = json.load(f)["paired_per_seed"]
    lines = ["| map against the same network's | "
             + " | ".join(label for _, label in spec["columns"]) + " |",
             "|---|" + "---|" * len(spec["columns"])]
    for label, key, scale in spec["rows"]:
        lines.append(f"| {label} | " + " | ".join(
            cell(paired[variant][key], scale) for variant, _ in spec["columns"]) + " |")
    return "\n".join(lines) + "\n"


def update(text):
    """`text` with every marked table rendered anew."""
    out, position = [], 0
    for match in START.finditer(text):
        end = text.index(END, match.end())
        out += [text[position:match.end()], render(match.group(1))]
        position = end
    return "".join(out) + text[position:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="Rewrite the marked tables.")
    mode.add_argument("--check", action="store_true",
                      help="Exit 1 where a marked table differs from its JSON.")
    args = parser.parse_args(argv)
    stale = []
    for name in FILES:
        path = os.path.join(REPO, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if not START.search(text):
            continue
        new = update(text)
        if new != text:
            stale.append(name)
            if args.write:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
    if args.check and stale:
        print(f"{', '.join(stale)}: a results table differs from its JSON; run "
              "python benchmarks/results_tables.py --write", file=sys.stderr)
        return 1
    for name in stale:
        print(f"rewrote the results tables of {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
