"""keras-amb: attention maps that explain, with an Attention Mining Branch.

ABN (Fukui et al., CVPR 2019) improved by an Attention Mining Branch,
Prototype Conformity loss and Complement Objective Training, in Keras 3 for
the TensorFlow, JAX and PyTorch backends.

Importing `keras_amb` imports Keras and registers every keras-amb layer,
model and optimizer for `keras.saving.load_model`. The `keras-amb`
command-line tool defers that until it has applied `--backend` (as does
KERAS_AMB_DEFER_IMPORTS=1).

    import keras_amb
    model = keras_amb.load_model("saved_models/synthetic-mining-...")  # or a .keras file
    [p] = keras_amb.predict(model, "photo.jpg")  # any size: the model's own preprocessing
    p.label, p.top_k, p.attention               # class, top-5 (name, probability), map
"""

import importlib
import os
import sys
import warnings

__version__ = "0.2.0"

# TensorFlow's oneDNN kernels are on by default only on CPUs with
# AVX512_VNNI, AVX512_BF16 or AMX. Elsewhere (AVX2 CPUs, most laptops and
# cloud machines) TensorFlow falls back to Eigen kernels built for AVX, which
# trained resnet_tiny's ABN at 0.5-0.6x and AMB + PC + COT at 0.4x the speed
# with oneDNN on a 2-core AVX2 CPU (benchmarks/results/cpu_2core_avx2_peer_tiny.md).
# keras-amb turns them on everywhere unless TF_ENABLE_ONEDNN_OPTS is set; it
# is read when TensorFlow loads, so this works when keras_amb is imported
# first (the `keras-amb` command always is); imported after TensorFlow (say
# after `import keras`), it is too late, and keras_amb warns once where the
# kernels stay off.
_ONEDNN_BY_DEFAULT = ("avx512_vnni", "avx512_bf16", "amx_tile")


def _late_onednn_warning(tensorflow_loaded, user_setting, cpu_flags):
    """The warning to give when TensorFlow loaded before keras_amb could
    turn oneDNN on, on a CPU where it is off by default; else None."""
    if not tensorflow_loaded or user_setting is not None or cpu_flags is None:
        return None
    if any(flag in cpu_flags for flag in _ONEDNN_BY_DEFAULT):
        return None
    return ("TensorFlow was imported before keras_amb, so its oneDNN kernels stay off on "
            "this CPU (no AVX512_VNNI/AMX): TensorFlow trains at about half the speed "
            "(benchmarks/results/cpu_2core_avx2_peer_tiny.md). Import keras_amb before "
            "keras or tensorflow, or set TF_ENABLE_ONEDNN_OPTS=1 before Python starts.")


def _cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None  # not Linux: say nothing


_message = _late_onednn_warning("tensorflow" in sys.modules,
                                os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                                _cpu_flags() if "tensorflow" in sys.modules else None)
if _message:
    warnings.warn(_message, RuntimeWarning, stacklevel=2)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

_LAZY = {
    "AttentionBranchNetwork": "keras_amb.models",
    "AttentionMiningNetwork": "keras_amb.models",
    "DualOptimizer": "keras_amb.optimizers",
    "Run": "keras_amb.app.runs",
    "load_model": "keras_amb.app.runs",
    "predict": "keras_amb.inference",
    "save_preset": "keras_amb.presets",
    "upload_preset": "keras_amb.presets",
    "losses": "keras_amb.losses",
    "layers": "keras_amb.layers",
    "models": "keras_amb.models",
    "optimizers": "keras_amb.optimizers",
    "data": "keras_amb.data",
}


# Modules that moved under `keras_amb.app` in 0.3 (the application on top of
# the library). `from keras_amb import runs` (and `keras_amb.runs`) still
# gives the moved module, through `__getattr__` (no import hook, no import
# side effect), until 1.0 removes it; `import keras_amb.runs` does not.
_MOVED = ("runs", "run_files", "run_lock", "trainer", "callbacks", "ablation",
          "ablation_report", "export", "config", "config_checks", "overrides",
          "run_config", "resume_check", "distribution", "console", "review",
          "yaml_reader", "safety", "runtime")


def __getattr__(name):
    if name in _MOVED:
        return importlib.import_module(f"keras_amb.app.{name}")
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.endswith(name) else getattr(module, name)
    raise AttributeError(f"module 'keras_amb' has no attribute {name!r}")


__all__ = list(_LAZY)

_DEFER = os.environ.get("KERAS_AMB_DEFER_IMPORTS") == "1" or os.path.basename(
    sys.argv[0] if sys.argv and sys.argv[0] else ""
) in ("keras-amb", "keras-amb.exe")
if not _DEFER:
    from keras_amb import models as _models  # noqa: F401  (registers classes)
    from keras_amb import optimizers as _optimizers  # noqa: F401
