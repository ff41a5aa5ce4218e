"""What a run folder holds, by name, and how its files are listed and
removed (`runs.Run` is the one reader of the layout; this is its table)."""

import os
import shutil

STATE_FILE = "state.json"
LOCK_FILE = ".lock"
# Where a run's trained model is, best first.
MODEL_FILES = (
    "model.keras",
    os.path.join("checkpoints", "mining-best.keras"),
    os.path.join("checkpoints", "proposed-best.keras"),  # runs of 0.2 and earlier
    "abn.keras",
    os.path.join("checkpoints", "abn-best.keras"),
)
# What `Run.initialise` and training write in a run folder.
RUN_FILES = ("config.yaml", "labels.txt", STATE_FILE, "history.csv", "logs",
             "checkpoints", "test_metrics.json")


def listing(run_dir):
    """`(entry, bytes)` of the folder's visible entries, sorted; a folder
    (`logs/`, `checkpoints/`) as one entry with its total size."""
    found = []
    for entry in sorted(os.listdir(run_dir)):
        if entry.startswith("."):
            continue
        full = os.path.join(run_dir, entry)
        if os.path.isdir(full):
            size = sum(os.path.getsize(os.path.join(d, f))
                       for d, _, fs in os.walk(full) for f in fs)
            found.append((entry + "/", size))
        else:
            found.append((entry, os.path.getsize(full)))
    return found


def remove(run_dir, entries):
    """Removes `entries` of `run_dir` (folders whole; a link, not what it
    points to); missing ones are skipped."""
    for entry in entries:
        full = os.path.join(run_dir, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        elif os.path.lexists(full):
            os.remove(full)
