"""Named presets: a trained model as a folder others load by name.

The layout is keras-hub's (`save_to_preset` / `from_preset`), so the same
tools read it: `config.json` (the model's `keras.saving` config, without its
compile config), `model.weights.h5` (its variables, no optimizer state),
`metadata.json` (`keras_version`, `keras_amb_version`, `parameter_count`,
`date_saved`) and a `README.md` model card. keras-amb does not depend on
keras-hub for it: keras-hub's loaders and `upload_preset` accept only its
own `Backbone` classes, and it would add a large dependency for three files
(docs/guides/presets.md).

A preset folder is a `.keras` archive unzipped: loading packs the three files
into a temporary `.keras` archive and goes through the same checks as any
model file (`model_file.check_model_file`), in Keras's safe mode. Every
command that takes a model takes a preset folder; Python also takes a hub
handle (`hf://user/name`, `kaggle://owner/model/keras/variation`) where
`huggingface_hub` or `kagglehub` is installed and a network is there.

Example:

```python
import keras_amb

keras_amb.save_preset(model, "presets/birds-amb")
model = keras_amb.load_model("presets/birds-amb")
keras_amb.upload_preset("hf://me/birds-amb", "presets/birds-amb")  # needs a network
```
"""

import atexit
import datetime
import json
import os
import shutil
import tempfile
import zipfile

from keras_amb.errors import RunError
from keras_amb.files import atomic_write_directory

CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE = "config.json", "model.weights.h5", "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
HUB_PREFIXES = ("hf://", "kaggle://")


def is_preset(path):
    """A folder holding a preset's three files (and not a run folder)."""
    path = os.fspath(path)
    return (os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f))
                                        for f in PRESET_FILES)
            and not os.path.isfile(os.path.join(path, "config.yaml")))


def save_preset(model, folder):
    """Writes `model` as a preset folder (which must not exist yet), whole
    or not at all (a temporary folder and a rename). Returns `folder`."""
    import keras

    from keras_amb import __version__

    folder = os.fspath(folder)
    if os.path.lexists(folder):
        raise RunError(f"{folder}: already exists; a preset is written to a new folder")
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    metadata = {
        "keras_version": keras.version(),
        "keras_amb_version": __version__,
        "parameter_count": int(model.count_params()),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    }

    def write(tmp):
        os.makedirs(tmp)
        with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
        with open(os.path.join(tmp, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2)
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(_model_card(model, os.path.basename(os.path.normpath(folder)), metadata))

    atomic_write_directory(folder, write)
    return folder


def _model_card(model, name, metadata):
    names = model.get_class_names()
    shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
    return (f"# {name}\n\nA keras-amb model: {type(model).__name__} ({model.description}), "
            f"backbone {model.backbone}, {model.image_size} px input, {len(names)} classes "
            f"({shown}); {metadata['parameter_count']:,} parameters, saved with Keras "
            f"{metadata['keras_version']} and keras-amb {metadata['keras_amb_version']}.\n\n"
            "```python\nimport keras_amb\n"
            f'model = keras_amb.load_model("{name}")   # this folder, or its hub handle\n'
            '[p] = keras_amb.predict(model, "image.jpg")\n```\n\n'
            f"Or on the command line: `keras-amb predict image.jpg --model {name}`.\n")


def preset_archive(folder):
    """A temporary `.keras` archive of a preset folder's files (removed when
    the process ends), named after the folder, so that every model-file
    check and loader reads it. One per folder and process."""
    folder = os.path.abspath(os.fspath(folder))
    missing = [f for f in PRESET_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise RunError(f"{folder}: not a keras-amb preset (no {', '.join(missing)})")
    if folder in _ARCHIVES and os.path.isfile(_ARCHIVES[folder]):
        return _ARCHIVES[folder]
    target = os.path.join(_scratch(), f"{len(_ARCHIVES)}",
                          os.path.basename(folder) + ".keras")
    os.makedirs(os.path.dirname(target))
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for name in PRESET_FILES:
            archive.write(os.path.join(folder, name), name)
    _ARCHIVES[folder] = target
    return target


# Folder -> its archive, for this process (a handful of presets at most:
# each command opens one or two models).
_ARCHIVES = {}
_SCRATCH = []


def _scratch():
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="keras-amb-presets-"))
        atexit.register(shutil.rmtree, _SCRATCH[0], ignore_errors=True)
    return _SCRATCH[0]


def resolve_handle(handle):
    """A preset folder for a hub handle (downloaded, where the hub's client
    is installed and reachable), or `handle` itself."""
    handle = os.fspath(handle)
    if handle.startswith("hf://"):
        client, fetch = "huggingface_hub", lambda hub: hub.snapshot_download(
            repo_id=handle[len("hf://"):])
    elif handle.startswith("kaggle://"):
        client, fetch = "kagglehub", lambda hub: hub.model_download(handle[len("kaggle://"):])
    else:
        return handle
    try:
        hub = __import__(client)
    except ImportError:
        raise RunError(f"{handle}: loading from a hub needs `pip install {client}` and a "
                       "network; or download the preset folder and give its path") from None
    try:
        return fetch(hub)
    except Exception as error:  # noqa: BLE001 (any network or hub failure: one line)
        raise RunError(f"{handle}: cannot be downloaded ({error.__class__.__name__}: "
                       f"{str(error).splitlines()[0] if str(error) else ''}); with no "
                       "network, download the preset folder elsewhere and give its path"
                       ) from None


def upload_preset(uri, folder):
    """Uploads a preset folder to the Hugging Face Hub (`hf://user/name`)
    or Kaggle Models (`kaggle://owner/model/keras/variation`)."""
    folder = os.fspath(folder)
    if not uri.startswith(HUB_PREFIXES):
        raise RunError(f"{uri}: a hub handle starts with hf:// or kaggle://")
    if not is_preset(folder):
        raise RunError(f"{folder}: not a keras-amb preset (save one with save_preset)")
    if uri.startswith("hf://"):
        try:
            import huggingface_hub
        except ImportError:
            raise RunError(f"{uri}: uploading needs `pip install huggingface_hub`") from None
        repo = huggingface_hub.create_repo(repo_id=uri[len("hf://"):], exist_ok=True)
        huggingface_hub.upload_folder(repo_id=repo.repo_id, folder_path=folder)
    elif uri.startswith("kaggle://"):
        try:
            import kagglehub
        except ImportError:
            raise RunError(f"{uri}: uploading needs `pip install kagglehub`") from None
        kagglehub.model_upload(uri[len("kaggle://"):], folder)
