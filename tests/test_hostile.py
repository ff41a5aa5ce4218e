"""Reliability II: hostile files, configs, names and settings get a one-line
refusal with bounded cost, and nothing is lost.

One section per class of attack (issue #39); each case goes through the
`keras-amb` command (in-process, click's CliRunner, unless a fresh process
is the point) and asserts the exit code, one message line naming the file,
option or variable, file hashes unchanged, and bounded peak memory where
memory is the point. The helpers are `test_faults.py`'s.
"""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from keras_amb import AttentionMiningNetwork
from keras_amb import files
from keras_amb import model_file as amb_model_file
from tests.test_faults import CLASSES
from tests.test_faults import ONCE_UNDER
from tests.test_faults import SIZE
from tests.test_faults import hashes
from tests.test_faults import invoke
from tests.test_faults import one_line_error
from tests.test_faults import write_png
from tests.helpers import tiny_model_file

pytestmark = pytest.mark.backend_independent(ONCE_UNDER)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny untrained keras-amb model file."""
    return tiny_model_file(tmp_path_factory.mktemp("model"), CLASSES, SIZE)


@pytest.fixture
def photo(tmp_path):
    return write_png(tmp_path / "a.png")


def peak_mb(args, env=None):
    """`keras-amb ARGS` in a fresh process: `(returncode, stderr, peak MB)`;
    the peak resident memory is the command's own (it is the only child of
    a small Python process that reports it)."""
    exe = os.path.join(os.path.dirname(sys.executable), "keras-amb")
    code = ("import resource, subprocess, sys\n"
            f"r = subprocess.run({[exe] + [str(a) for a in args]!r}, capture_output=True, "
            "text=True, errors='replace')\n"
            "sys.stderr.write(r.stderr)\n"
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, **(env or {})))
    returncode, kb = result.stdout.split()
    return int(returncode), result.stderr, int(kb) / 1024


def rewrite(source, target, config=None, metadata=None, extra=()):
    """A copy of model file `source` with its config changed by `config`
    (a function of the parsed JSON), `metadata` (bytes) and extra members."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    parsed = json.loads(members["config.json"])
    if config is not None:
        config(parsed)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("config.json", json.dumps(parsed))
        out.writestr("metadata.json", members["metadata.json"] if metadata is None else metadata)
        out.writestr("model.weights.h5", members["model.weights.h5"])
        for name, size in extra:
            with out.open(zipfile.ZipInfo(name), "w") as member:  # streamed: no RAM
                for _ in range(size // 2**20):
                    member.write(b"\0" * 2**20)
    return str(target)


# === 1. Outputs: only regular files are replaced, and they keep their mode ===

def test_special_files_are_refused_and_links_written_through(model_file, photo, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    to_device = tmp_path / "null"
    os.symlink(os.devnull, to_device)
    targets = [(fifo, "FIFO"), (to_device, "character device")]
    if os.geteuid() == 0:  # as root, a real device node of our own
        node = tmp_path / "devnull"
        os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))
        targets.append((node, "character device"))
    for target, kind in targets:
        line = one_line_error(invoke("predict", photo, "--model", model_file, "--output",
                                     target), code=1)
        assert str(target) in line and kind in line, line
    assert os.path.islink(to_device) and os.readlink(to_device) == os.devnull
    assert os.stat(fifo).st_mode & 0o170000 == 0o010000  # still a FIFO
    # A link to a regular file is written through: the link stays a link.
    real = tmp_path / "real.jsonl"
    real.write_text("old\n")
    link = tmp_path / "link.jsonl"
    os.symlink(real, link)
    assert invoke("predict", photo, "--model", model_file, "--output", link).exit_code == 0
    assert os.path.islink(link) and json.loads(real.read_text())["path"] == photo


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444 | 0o200])
def test_a_replaced_file_keeps_its_mode(model_file, photo, tmp_path, mode):
    out = tmp_path / "p.jsonl"
    out.write_text("old\n")
    os.chmod(out, mode)
    assert invoke("predict", photo, "--model", model_file, "--output", out).exit_code == 0
    assert os.stat(out).st_mode & 0o777 == mode and "old" not in out.read_text()
    files.atomic_write_text(str(out), "{}")
    assert os.stat(out).st_mode & 0o777 == mode


# === 2. Model files cannot demand unbounded memory or disk ===

def test_model_files_declaring_huge_models_are_refused_from_their_config(model_file,
                                                                        tmp_path):
    def classes(k, names=True):
        def change(config):
            config["config"]["num_classes"] = k
            config["config"]["class_names"] = [f"c{i}" for i in range(k)] if names else None
        return change

    wide = rewrite(model_file, tmp_path / "wide.keras", classes(25000))
    huge = rewrite(model_file, tmp_path / "huge.keras", classes(200_000_000, names=False))
    photo = write_png(tmp_path / "x.png")
    before = hashes(tmp_path)
    for path, args in ((wide, ["predict", photo, "--model"]),
                       (wide, ["info"]), (huge, ["info", "--classes"]), (huge, ["info"])):
        code, stderr, peak = peak_mb(args + [path])
        lines = stderr.strip().splitlines()
        assert code == 1 and len(lines) == 1, stderr
        assert path in lines[0] and "KERAS_AMB_MAX_MODEL_BYTES" in lines[0], lines[0]
        assert peak < 600, (args, peak)
    # The limit is the user's to raise: the same file is then read.
    code, stderr, _ = peak_mb(["info", wide], env={"KERAS_AMB_MAX_MODEL_BYTES": str(2**33)})
    assert code == 0, stderr
    assert hashes(tmp_path) == before


def test_oversized_and_unexpected_members_are_refused_before_loading(model_file, tmp_path):
    bloated = rewrite(model_file, tmp_path / "meta.keras", metadata=b'{"a": "' + b"x" * (
        3 * 2**20) + b'"}')
    extra = rewrite(model_file, tmp_path / "extra.keras", extra=[("junk0", 64 * 2**20)])
    assets = rewrite(model_file, tmp_path / "assets.keras",
                     extra=[(f"assets/x{i}", 8 * 2**20) for i in range(3)])
    photo = write_png(tmp_path / "x.png")
    free_before = os.statvfs(tmp_path).f_bavail
    for path, reason in ((bloated, "metadata.json"), (extra, "unexpected member 'junk0'"),
                         (assets, "assets/")):
        for args in (["info", path], ["predict", photo, "--model", path]):
            one_line_error(invoke(*args), path, reason)
    assert abs(os.statvfs(tmp_path).f_bavail - free_before) * os.statvfs(
        tmp_path).f_frsize < 32 * 2**20  # nothing was extracted


@pytest.mark.parametrize("change,reason", [
    (lambda c: c.__setitem__("config", "abc"), '"config" must be a JSON object'),
    (lambda c: c["config"].__setitem__("class_names", [1, 2, 3, 4]),
     "class_names must be a list of strings"),
    (lambda c: c["config"].__setitem__("class_names", {"a": 1}),
     "class_names must be a list of strings"),
    (lambda c: c["config"].__setitem__("class_names", ["a", "b"]), "2 class_names for"),
    (lambda c: c["config"].__setitem__("num_classes", "4"), "num_classes"),
    (lambda c: c["config"].__setitem__("image_size", 10**6), "image_size"),
])
def test_malformed_model_configs_are_one_line(model_file, tmp_path, change, reason):
    path = rewrite(model_file, tmp_path / "bad.keras", change)
    for args in (["info", path], ["info", path, "--classes"]):
        one_line_error(invoke(*args), path, reason)


def test_malformed_metadata_is_one_line(model_file, tmp_path):
    for metadata, reason in ((b"[1, 2]", "metadata.json must hold a JSON object"),
                             (b"{not json", "metadata.json is not JSON")):
        path = rewrite(model_file, tmp_path / "m.keras", metadata=metadata)
        one_line_error(invoke("info", path), path, reason)
    odd = rewrite(model_file, tmp_path / "odd.keras",
                  metadata=b'{"keras_version": 3, "date_saved": {"x": 1}}')
    assert invoke("info", odd).exit_code == 0


def test_the_parameter_table_matches_built_models():
    from keras_amb.arguments import BACKBONES
    from keras_amb.models import AttentionBranchNetwork

    for backbone in BACKBONES:
        if backbone.startswith("resnet50"):
            continue  # 38M-parameter builds; their coefficients were measured the same way
        for cls in (AttentionBranchNetwork, AttentionMiningNetwork):
            model = cls(num_classes=7, backbone=backbone, image_size=32)
            model(np.zeros((1, 32, 32, 3), np.float32))
            built = sum(int(np.prod(w.shape)) for w in model.weights)
            bound = amb_model_file.declared_parameters(backbone, 7)
            assert built <= bound and (cls is AttentionBranchNetwork or built == bound), (
                backbone, cls.__name__, built, bound)


# === 3. Configs: YAML that cannot exhaust the machine ===

def _laughs(levels=9, width=9, key="crop_scale"):
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    lines.append(f"{key}: *l{levels - 1}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text,reason", [
    (_laughs(), "expands to over"),
    ("crop_scale: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ("a:\n" + "".join(" " * (i + 1) + f"b{i}:\n" for i in range(200)) + "\n",
     "nested too deeply"),
    ("seed: 1\n" + "#" * (2 * 2**20) + "\n", "over the 1 MiB"),
])
def test_hostile_yaml_is_refused_in_bounded_time_and_memory(tmp_path, text, reason):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    code, stderr, peak = peak_mb(["train", "--config", path, "--print-config"])
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1, stderr[-2000:]
    assert str(path) in lines[0] and reason in lines[0], lines[0]
    assert len(lines[0]) < 400 and "lol" not in lines[0]
    assert peak < 300, peak


def test_hostile_yaml_in_set_is_a_usage_error(tmp_path):
    value = _laughs().replace("\n", ", ").replace("crop_scale: ", "x: ")
    result = invoke("train", "--set", "crop_scale={" + value.rstrip(", ") + "}",
                    "--print-config")
    assert result.exit_code == 2 and "--set crop_scale" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# === 4. Resume trusts what is on disk only when it agrees ===

@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A tiny run whose mining stage stopped after its first epoch."""
    from tests.test_faults import TINY_TRAIN

    root = tmp_path_factory.mktemp("resume")
    config = root / "tiny.yaml"
    config.write_text(json.dumps(dict(
        TINY_TRAIN, epochs=2, synthetic={"train_size": 32, "val_size": 16, "test_size": 16,
                                         "image_size": 48})))
    run = root / "run"
    result = invoke("train", "--config", config, "--output", run)
    assert result.exit_code == 0, result.output
    state = json.loads((run / "state.json").read_text())
    state.update(stage_index=1, completed_epochs=1)
    state.pop("finished")
    (run / "state.json").write_text(json.dumps(state))
    return run


def _edit_config(run, **changes):
    import yaml

    path = run / "config.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    config.update(changes)
    path.write_text(yaml.safe_dump(config))
    return original


@pytest.mark.parametrize("changes,keys", [
    ({"backbone": "resnet_small", "image_size": 64}, ["backbone", "image_size"]),
    ({"pc_weight": 0.5}, ["pc_weight"]),
    ({"architecture": "abn"}, ["stages"]),
])
def test_a_resume_whose_config_disagrees_is_refused(interrupted_run, changes, keys):
    original = _edit_config(interrupted_run, **changes)
    try:
        before = hashes(interrupted_run)
        line = one_line_error(invoke("train", "--resume", interrupted_run),
                              interrupted_run / "config.yaml", *keys)
        assert "put config.yaml back" in line
        assert hashes(interrupted_run) == before
    finally:
        (interrupted_run / "config.yaml").write_text(original)


def test_restart_stage_trains_the_stage_anew_and_keeps_the_old_checkpoints(
        interrupted_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(interrupted_run, run)
    # An earlier stage's model must still fit: a new backbone cannot restart.
    original = _edit_config(run, backbone="resnet_small")
    line = one_line_error(invoke("train", "--resume", run, "--restart-stage"),
                          run / "abn.keras", "backbone")
    assert "start a new run" in line
    (run / "config.yaml").write_text(original)
    _edit_config(run, pc_weight=0.5)
    old = hashes(run / "checkpoints" / "mining-last.keras")
    result = invoke("train", "--resume", run, "--restart-stage")
    assert result.exit_code == 0, result.output
    assert "Restarting stage 'mining'" in result.output
    aside = [d for d in os.listdir(run / "checkpoints") if d.startswith("replaced-")]
    assert len(aside) == 1
    kept = hashes(run / "checkpoints" / aside[0] / "mining-last.keras")
    assert list(kept.values()) == list(old.values())
    saved = amb_model_file.read_model_file(str(run / "model.keras"), count_parameters=False)
    assert saved.config["pc_weight"] == 0.5
    assert invoke("train", "--restart-stage").exit_code == 2


# === 6. Names are data ===

@pytest.fixture
def hostile_names(tmp_path):
    folder = tmp_path / "in"
    os.makedirs(folder / ".ipynb_checkpoints")
    names = ["ok.png", "$^$.png", "a\\b.png", "esc\x1b[31mred.png",
             os.fsdecode(b"caf\xe9.png")]
    for i, name in enumerate(names):
        write_png(os.path.join(os.fsencode(folder), os.fsencode(name)).decode(
            "utf-8", "surrogateescape"), seed=i)
    write_png(folder / ".ipynb_checkpoints" / "ok-checkpoint.png")
    return folder, names


def test_visualize_draws_every_name_literally(model_file, hostile_names, tmp_path):
    folder, names = hostile_names
    out = tmp_path / "figures"
    result = invoke("visualize", folder, "--model", model_file, "--output", out,
                    "--save-maps")
    assert result.exit_code == 0, result.output
    assert len([n for n in os.listdir(out) if n.endswith(".png")]) == len(names)
    assert "\x1b" not in result.output and "ipynb" not in result.output
    assert "esc\\x1b[31mred.png" in result.output and "caf\\xe9.png" in result.output
    assert not any(".ipynb" in name for _, dirs, _ in os.walk(out) for name in dirs)


def test_predict_writes_every_name_to_csv_and_json(model_file, hostile_names, tmp_path):
    import csv

    folder, names = hostile_names
    out = tmp_path / "p.csv"
    result = invoke("predict", folder, "--model", model_file, "--format", "csv", "--output",
                    out, "--save-maps", tmp_path / "maps")
    assert result.exit_code == 0, result.output
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(names) and all(not row["error"] for row in rows)
    assert any(row["path"].endswith("caf\\xe9.png") for row in rows)
    result = invoke("predict", folder, "--model", model_file, "--output", tmp_path / "p.jsonl")
    records = [json.loads(line) for line in open(tmp_path / "p.jsonl", encoding="utf-8")]
    assert sorted(os.path.basename(r["path"]) for r in records) == sorted(names)


def test_class_names_reach_the_terminal_escaped(tmp_path):
    path = str(tmp_path / "odd.keras")
    odd = ["jay", "evil\x1b]0;owned\x07", "two\nlines", "$^$"]
    model = AttentionMiningNetwork(num_classes=4, backbone="resnet_tiny", image_size=SIZE,
                                   class_names=odd)
    model(np.zeros((1, SIZE, SIZE, 3), np.float32))
    model.save(path)
    result = invoke("info", path, "--classes")
    assert result.exit_code == 0
    assert result.output.splitlines() == ["jay", "evil\\x1b]0;owned\\x07", "two\\nlines", "$^$"]
    assert "\x1b" not in invoke("info", path).output
    missing = tmp_path / "no\x1b[2Jsuch.png"
    result = invoke("predict", write_png(tmp_path / "x.png"), str(missing), "--model", path)
    assert "\x1b" not in result.output and "no\\x1b[2Jsuch.png" in result.stderr


# === 7. Settings from the environment; 8. exit codes ===

@pytest.mark.parametrize("variable,value", [
    ("KERAS_AMB_MAX_ASPECT_RATIO", "nan"), ("KERAS_AMB_MAX_ASPECT_RATIO", "inf"),
    ("KERAS_AMB_MAX_PIXELS", "abc"), ("KERAS_AMB_MAX_PIXELS", "0"),
    ("KERAS_AMB_MAX_PIXELS", "1.5"), ("KERAS_AMB_MAX_MODEL_BYTES", "-1"),
])
def test_bad_settings_are_named_once_at_start(model_file, photo, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    line = one_line_error(invoke("predict", photo, "--model", model_file), variable, code=2)
    assert repr(value) in line


def test_a_misspelt_backend_is_one_line_in_a_fresh_process(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "keras-amb")
    result = subprocess.run([exe, "info", "x.keras"], capture_output=True, text=True,
                            env=dict(os.environ, KERAS_BACKEND="tensorflw"), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: KERAS_BACKEND='tensorflw': must be tensorflow, jax or torch; did you mean "
        "tensorflow?"]


@pytest.mark.parametrize("args,names", [
    (["train", "--epochs", "0", "--print-config"], ["--epochs"]),
    (["train", "--set", "seed", "--print-config"], ["--set 'seed'"]),
    (["train", "--set", "seed=[1", "--print-config"], ["--set seed"]),
    (["train", "--dataset", "/nonexistent", "--print-config"], ["--dataset", "/nonexistent"]),
    (["train", "--dataset", "synthtic", "--print-config"], ["did you mean synthetic"]),
])
def test_usage_mistakes_exit_2_in_one_line(tmp_path, args, names):
    one_line_error(invoke(*args), *names, code=2)


def test_load_model_takes_a_run_folder_as_every_command_does(interrupted_run):
    """#38: `keras_amb.load_model(run_or_file)`."""
    import keras_amb

    from_folder = keras_amb.load_model(str(interrupted_run))
    from_file = keras_amb.load_model(str(interrupted_run / "abn.keras"))
    assert type(from_folder).__name__ == "AttentionMiningNetwork"  # its model.keras
    assert from_folder.get_class_names() == from_file.get_class_names()
    assert len(from_folder.get_class_names()) == from_folder.num_classes


# === #38: a newcomer's mistakes are answered at once and leave nothing ===

def test_a_misspelt_input_is_a_usage_error_before_the_model_loads(model_file, tmp_path,
                                                                   monkeypatch):
    from keras_amb.app import runs

    monkeypatch.chdir(tmp_path)
    write_png(tmp_path / "photo.png")

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(runs.Run, "load_model", never)
    for command in ("visualize", "predict"):
        line = one_line_error(invoke(command, "phot.png", "--model", model_file), "phot.png",
                              code=2)
        assert "did you mean photo.png?" in line
    assert sorted(os.listdir(tmp_path)) == ["photo.png"]


def test_a_failed_command_leaves_no_empty_output_folder(model_file, photo, tmp_path):
    out = tmp_path / "new" / "deeper" / "figures"
    result = invoke("visualize", photo, "--model", model_file, "--class", "no-such-class",
                    "--output", out)
    assert result.exit_code == 2 and "--class" in result.output
    assert not (tmp_path / "new").exists()
    # A folder that was there stays, and one the command wrote into stays.
    (tmp_path / "kept").mkdir()
    invoke("visualize", photo, "--model", model_file, "--class", "no-such-class",
           "--output", tmp_path / "kept")
    assert (tmp_path / "kept").is_dir()


def test_info_takes_the_model_as_every_command_does(model_file):
    as_argument, as_option = invoke("info", model_file), invoke("info", "--model", model_file)
    assert as_argument.exit_code == as_option.exit_code == 0
    assert as_argument.output == as_option.output
    assert invoke("info", "-m", model_file, "--classes").output.split() == CLASSES
    assert invoke("info").exit_code == 2


def test_the_old_architecture_name_still_reads_as_mining(tmp_path):
    """`proposed`, the paper's word and keras-amb's name before 0.3, is read
    as `mining` on the command line and in config files; `--help` lists only
    the new name; run folders of 0.2 (stages and checkpoints named
    `proposed`) resume unchanged (tests/test_compatibility.py)."""
    printed = invoke("train", "--architecture", "proposed", "--print-config")
    assert printed.exit_code == 0 and "architecture: mining" in printed.output
    config = tmp_path / "old.yaml"
    config.write_text("architecture: proposed\nepochs: 3\n")
    printed = invoke("train", "--config", config, "--print-config")
    assert printed.exit_code == 0 and "architecture: mining" in printed.output
    assert "[abn|mining]" in invoke("train", "--help").output
    wrong = invoke("train", "--architecture", "mine", "--print-config")
    assert wrong.exit_code == 2 and "'mine' is not one of 'abn', 'mining'" in wrong.output
