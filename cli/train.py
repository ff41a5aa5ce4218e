"""`keras-amb train`."""

import click

from keras_amb.cli.main import BACKENDS
from keras_amb.cli.main import _set_backend
from keras_amb.cli.main import run_reporting_errors


def _opt(*names, **kwargs):
    return click.option(*names, default=None, show_default=False, **kwargs)


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML experiment config. Default: the config bundled for the "
              "dataset (configs/<dataset>.yaml). Options given here override it.")
@click.option("--resume", "resume", type=click.Path(file_okay=False),
              help="Continue an interrupted run folder from its last completed epoch.")
@_opt("--output", "-o", type=click.Path(file_okay=False),
      help="Run folder. Default: saved_models/<dataset>-<model>-<timestamp>.")
# Data
@_opt("--dataset", "-d", help="[data] 'synthetic' (built in, default), 'stanford_dogs', "
      "'caltech_birds2010' (TFDS), or a folder of class-named subfolders.")
@_opt("--data-dir", type=click.Path(), help="[data] Where TFDS keeps its datasets.")
@_opt("--skip-bad-images/--no-skip-bad-images",
      help="[data] Leave out unreadable images (listed in the log) instead of stopping.")
@_opt("--image-size", type=int, help="[data] Input side in pixels (paper: 224).")
@_opt("--batch-size", type=int, help="[data] Batch size (paper: 16).")
# Model
@_opt("--model", "-m", type=click.Choice(["abn", "proposed"]),
      help="[model] 'abn' stops after ABN training; 'proposed' (default) pre-trains "
      "an ABN, then trains the proposed model from it.")
@_opt("--backbone", type=click.Choice(["resnet50", "resnet_small", "resnet_tiny"]),
      help="[model] ResNet-50 as in the paper, or a small ResNet for CPUs.")
@_opt("--weights", help="[model] Backbone weights: 'imagenet', a weights file, or 'none'.")
@_opt("--amb/--no-amb", help="[model] Attention mining branch (ablation switch).")
@_opt("--pc/--no-pc", help="[model] Prototype conformity loss (ablation switch).")
@_opt("--cot/--no-cot", help="[model] Complement objective training (ablation switch).")
@_opt("--mask-threshold", type=float,
      help="[model] Mask threshold sigma (paper: 0.78 CUB, 0.40 Stanford Dogs).")
@_opt("--init-from", type=click.Path(exists=True),
      help="[model] Start the proposed model from this ABN run (or .keras file); "
      "skips pre-training.")
@_opt("--attention-targets",
      help="[model] Human-knowledge baseline: 'masks' (the dataset's masks) or a folder "
      "of edited maps; pulls the ABN's attention towards them.")
# Schedule
@_opt("--epochs", type=int, help="[schedule] Epochs of the final stage (paper: 300).")
@_opt("--pretrain-epochs", type=int,
      help="[schedule] Epochs of ABN pre-training before the proposed model (paper: 300).")
@_opt("--learning-rate", "--lr", type=float, help="[schedule] Base learning rate.")
@_opt("--seed", type=int, help="[schedule] Random seed (data order, augmentation, init).")
@_opt("--deterministic/--no-deterministic",
      help="[schedule] Deterministic TensorFlow ops (slower); with --seed, identical runs.")
# Runtime
@_opt("--backend", type=click.Choice(BACKENDS), help="[runtime] Keras backend.")
@_opt("--mixed-precision", type=click.Choice(["mixed_float16", "mixed_bfloat16"]),
      help="[runtime] Mixed precision policy (losses and softmax stay float32).")
@_opt("--distribute/--no-distribute",
      help="[runtime] Data-parallel over all local devices (TF MirroredStrategy; "
      "MultiWorkerMirroredStrategy when TF_CONFIG is set; JAX DataParallel). "
      "--batch-size is the global batch.")
@_opt("--jit-compile/--no-jit-compile",
      help="[runtime] Force XLA on or off (default: on for JAX and TF-on-GPU).")
def train(config_file, resume, output, **options):
    """Train ABN, then the proposed model (AMB + PC + COT) initialised from it.

    \b
    Examples:
      keras-amb train --dataset synthetic
      keras-amb train --dataset stanford_dogs --data-dir ~/tensorflow_datasets
      keras-amb train --dataset ./my_images --backbone resnet_small --image-size 96 --weights none
      keras-amb train --dataset caltech_birds2010 --no-cot        # AMB + PC ablation
      keras-amb train --resume saved_models/synthetic-proposed-20260101-120000
    """
    _set_backend(options.get("backend"))
    run_reporting_errors(_train, config_file, resume, output, options)


def _train(config_file, resume, output, options):
    import os

    from keras_amb import config as amb_config

    overrides = dict(options)
    lr = overrides.pop("learning_rate")
    jit = overrides.pop("jit_compile")
    if overrides.get("weights") == "none":
        overrides["weights"] = None
        overrides["_weights_none"] = True
    if resume:
        given = {k for k, v in overrides.items() if v is not None and k != "backend"}
        if given or config_file or output:
            raise click.UsageError(
                "--resume continues a run with its saved config; do not combine it "
                f"with other options (got: {', '.join(sorted(given)) or '--config/--output'})"
            )
        path = os.path.join(resume, "config.yaml")
        config = amb_config.resolve(path) if os.path.isfile(path) else None
        if config is None:
            raise amb_config.ConfigError(f"{resume}: no config.yaml; not a keras-amb run folder")
        _set_backend(config.get("backend"))
    else:
        weights_none = overrides.pop("_weights_none", False)
        config = amb_config.resolve(config_file, overrides)
        if weights_none:
            config["weights"] = None
        if lr is not None:
            config["optimizer"]["learning_rate"] = lr
            amb_config.validate(config)
        if jit is not None:
            config["jit_compile"] = jit
    config.pop("config_file", None)

    from keras_amb import trainer

    result = trainer.train(config, run_dir=resume or output, resume=bool(resume))
    m = result.test_metrics
    click.echo(
        f"\nTest: top-1 {m.get('top1', float('nan')):.4f}, top-5 "
        f"{m.get('top5', float('nan')):.4f}, attention-branch top-1 "
        f"{m.get('att_top1', float('nan')):.4f}"
    )
    click.echo(f"Run folder: {result.run_dir}")
    click.echo(f"  model:   {result.model_path}")
    click.echo("  config.yaml, history.csv, labels.txt, checkpoints/, logs/ (TensorBoard)")
    click.echo(f"Look at its attention maps: keras-amb visualize IMAGE --model {result.run_dir}")
