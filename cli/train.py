"""`keras-amb train`."""

import click

from keras_amb import arguments
from keras_amb.arguments import OPTIMIZER_NAMES
from keras_amb.cli.common import BACKENDS
from keras_amb.cli.common import _verbose
from keras_amb.cli.common import load_backend
from keras_amb.cli.common import refuse_backend_assignment
from keras_amb.cli.common import run_reporting_errors
from keras_amb.cli.common import set_backend


def _config_defaults():
    """What the default config (built-in defaults + configs/synthetic.yaml)
    sets, for `--help`; reads YAML only, imports no Keras."""
    from keras_amb.app import config as amb_config

    try:
        return amb_config.merged()
    except Exception:  # a broken install still gets its help
        return dict(amb_config.DEFAULTS)


_DEFAULTS = _config_defaults()
# Each option's parameter name -> the config key it sets (dotted if nested).
_KEYS = {}


# `train --help` lists the options in these groups, in this order; an
# option's group is its config section ("[data] ..." in its help), or
# "Research switches" for the switches that study the method rather than
# train with it.
GROUPS = {"": "Run", "data": "Data", "model": "Model",
          "schedule": "Schedule and optimizer", "runtime": "Runtime",
          "research": "Research switches (METHOD.md)"}


class ArchitectureChoice(click.Choice):
    """`click.Choice` of the architectures that also takes their old names
    (`proposed` for `mining`, until 2.0) without listing them."""

    def convert(self, value, param, ctx):
        return super().convert(arguments.architecture_name(value), param, ctx)


class GroupedOption(click.Option):
    """A click option that knows its `train --help` group."""

    def __init__(self, *args, group="", **kwargs):
        super().__init__(*args, **kwargs)
        self.help_group = group


class GroupedCommand(click.Command):
    """A command whose --help lists its options under `GROUPS` headings."""

    def format_options(self, ctx, formatter):
        groups = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                groups.setdefault(getattr(param, "help_group", ""), []).append(record)
        for group, title in GROUPS.items():
            if groups.get(group):
                with formatter.section(title):
                    formatter.write_dl(groups[group])


def _opt(*names, key=None, help="", research=False, **kwargs):
    """An option that only overrides the config when given; its help shows
    the value the default config supplies. `help` starts with its config
    section (`"[model] ..."`), which becomes its --help group (or
    "Research switches" with `research`)."""
    group = ""
    if help.startswith("["):
        group, help = help[1:].split("] ", 1)
    group = "research" if research else group
    if key is not None:
        long_name = next(n for n in names if n.startswith("--")).split("/")[0]
        _KEYS[long_name[2:].replace("-", "_")] = key
        value = _DEFAULTS
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        shown = "none" if value is None else str(value).lower() if isinstance(value, bool) else value
        help = f"{help} [config: {key}, default {shown}]"
    return click.option(*names, default=None, show_default=False, help=help, cls=GroupedOption,
                        group=group, **kwargs)


@click.command(cls=GroupedCommand)
@click.option("--config", "config_file",
              help="YAML experiment config: a path, or the name of a bundled one "
              "(synthetic, synthetic_v2, synthetic_v3, small_images, stanford_dogs_imagenet, "
              "stanford_dogs_paper, caltech_birds2010_imagenet, caltech_birds2010_paper, "
              "folder). Default: the dataset's bundled config. Options given here "
              "override it.")
@click.option("--resume", "resume", type=click.Path(file_okay=False),
              help="Continue an interrupted run folder from its last completed epoch. A "
              "config.yaml edited since, that disagrees with the run's checkpoints, is "
              "refused, naming the keys.")
@click.option("--restart-stage", is_flag=True,
              help="With --resume: train the current stage anew with the run's config.yaml "
              "as it is now (its checkpoints are moved to checkpoints/replaced-<time>/).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Set any config key, options or not; nested keys are dotted and may "
              "start with their section (data, model, schedule, runtime). VALUE is YAML. "
              "Repeatable, applied last. Example: --set model.pc_weight=1 "
              "--set optimizer.momentum=0.8 --set synthetic.train_size=600")
@click.option("--paper-objective", is_flag=True,
              help="Train the paper's objective: no map terms (area, smoothness, erasing, "
              "normalisation) and the mining terms on every weight that feeds the AMB. "
              "Options given beside it still apply.")
@click.option("--print-config", is_flag=True,
              help="Print the resolved config (defaults < config file < options) as YAML "
              "and exit.")
@_opt("--output", "-o", type=click.Path(file_okay=False),
      help="Run folder. Default: saved_models/<dataset>-<architecture>-<timestamp>.")
# Data
@_opt("--dataset", "-d", key="dataset",
      help="[data] 'synthetic' (built in), 'stanford_dogs', 'caltech_birds2010' (TFDS), "
      "or a folder of class-named subfolders.")
@_opt("--data-dir", type=click.Path(), key="data_dir",
      help="[data] Where TFDS keeps its datasets.")
@_opt("--skip-bad-images/--no-skip-bad-images", key="skip_bad_images",
      help="[data] Leave out unreadable images (listed in the log) instead of stopping.")
@_opt("--image-size", type=int, key="image_size", help="[data] Input side in pixels (paper: 224).")
@_opt("--batch-size", type=int, key="batch_size", help="[data] Batch size (paper: 16).")
@_opt("--flip/--no-flip", key="flip",
      help="[data] Random horizontal flips in training; --no-flip for data that is not "
      "mirror-symmetric (digits, text, products).")
@_opt("--crop-scale", type=(float, float), key="crop_scale",
      help="[data] Area fraction range MIN MAX of the training crops.")
# Model
@_opt("--architecture", "-a", type=ArchitectureChoice(arguments.ARCHITECTURES),
      key="architecture",
      help="[model] 'abn' stops after ABN training; 'mining' pre-trains an ABN, then "
      "trains the Attention Mining Network (AMB + PC + COT) from it.")
@_opt("--backbone", type=click.Choice(arguments.BACKBONES), key="backbone",
      help="[model] resnet50 (keras.applications, loads ImageNet weights), "
      "resnet50_official (the official ABN network, for from-scratch runs), or a small "
      "ResNet for CPUs.")
@_opt("--weights", key="weights",
      help="[model] Backbone weights: 'imagenet', a weights file, or 'none'.")
@_opt("--amb/--no-amb", key="amb", help="[model] Attention mining branch (ablation switch).")
@_opt("--pc/--no-pc", key="pc", help="[model] Prototype conformity loss (ablation switch).")
@_opt("--cot/--no-cot", key="cot",
      help="[model] Complement objective training (ablation switch).")
@_opt("--naive-bn-statistics/--no-naive-bn-statistics", research=True, key="naive_bn_statistics",
      help="[model] Let the AMB pass and COT's forward pass update batch-norm statistics "
      "(a naive port of the paper).")
@_opt("--mask-threshold", type=float, key="mask_threshold",
      help="[model] Mask threshold sigma (paper: 0.78 CUB, 0.40 Stanford Dogs).")
@_opt("--amb-weight", type=float, key="amb_weight",
      help="[model] Weight of the mining loss L_am (paper: 1e-4; GAIN: 1).")
@_opt("--amb-gradient", type=click.Choice(arguments.AMB_GRADIENTS), research=True, key="amb_gradient",
      help="[model] Weights the mining terms (L_am, COT's step) update: 'all' that feed "
      "the AMB (the paper), or the attention map's alone.")
@_opt("--pc-weight", type=float, key="pc_weight",
      help="[model] Weight of the whole PC loss in eq. 5 (the paper: 1; the centers' "
      "speed does not depend on it).")
@_opt("--pc-distance", type=click.Choice(arguments.PC_DISTANCES), research=True, key="pc_distance",
      help="[model] Distances in the PC loss: eq. 3's norms, or squared (the PC authors' "
      "code).")
@_opt("--area-weight", type=float, key="area_weight",
      help="[model] Weight of the map's area term (ours, not the paper's): keeps the "
      "mining terms from spreading the map over everything. 0 is off.")
@_opt("--area-target", type=float, research=True, key="area_target",
      help="[model] Area the map should cover: 0 penalises the map's mean; a fraction "
      "such as 0.1 uses the extremal-perturbation area constraint.")
@_opt("--smoothness-weight", type=float, research=True, key="smoothness_weight",
      help="[model] Weight of the map's total variation. 0 is off.")
@_opt("--map-normalization", type=click.Choice(arguments.MAP_NORMALIZATIONS),
      research=True, key="map_normalization",
      help="[model] Min-max normalise each map before the mining mask ('mask') or "
      "before the mask and the attention mechanism ('all').")
@_opt("--erasing-weight", type=float, research=True, key="erasing_weight",
      help="[model] Weight of the erasing term (ACoL): the classifier learns the "
      "evidence the map left out. 0 is off.")
@_opt("--init-from", type=click.Path(exists=True), key="init_from",
      help="[model] Start the Attention Mining Network from this ABN run (or .keras file); "
      "skips pre-training.")
@_opt("--attention-targets", key="attention_targets",
      help="[data] Human-knowledge baseline: 'masks' (the dataset's masks) or a folder "
      "of corrected maps; pulls the ABN's attention towards them.")
# Schedule
@_opt("--epochs", type=int, key="epochs", help="[schedule] Epochs of the final stage (paper: 300).")
@_opt("--pretrain-epochs", type=int, key="pretrain_epochs",
      help="[schedule] Epochs of ABN pre-training before the Attention Mining Network (paper: 300).")
@_opt("--learning-rate", "--lr", type=float, key="optimizer.learning_rate",
      help="[schedule] Base learning rate.")
@_opt("--optimizer", type=click.Choice(OPTIMIZER_NAMES), key="optimizer.name",
      help="[schedule] Optimizer of both stages (COT's step gets its own copy).")
@_opt("--momentum", type=float, key="optimizer.momentum",
      help="[schedule] SGD momentum (paper: 0.9).")
@_opt("--weight-decay", type=float, key="optimizer.weight_decay",
      help="[schedule] Weight decay (paper: 1e-4; the PC centers get none).")
# Runtime
@_opt("--seed", type=int, key="seed",
      help="[runtime] Random seed (data order, augmentation, init).")
@_opt("--deterministic/--no-deterministic", key="deterministic",
      help="[runtime] Deterministic TensorFlow ops (slower); with --seed, identical runs.")
@_opt("--backend", type=click.Choice(BACKENDS), key="backend",
      help="[runtime] Keras backend (none: KERAS_BACKEND, else tensorflow).")
@_opt("--mixed-precision", type=click.Choice(["mixed_float16", "mixed_bfloat16"]),
      key="mixed_precision", help="[runtime] Mixed precision (losses and softmax stay float32).")
@_opt("--distribute/--no-distribute", key="distribute",
      help="[runtime] Data-parallel over all devices (TF MirroredStrategy; "
      "MultiWorkerMirroredStrategy when TF_CONFIG is set; JAX DataParallel, several hosts "
      "with KERAS_DISTRIBUTION_*). --batch-size is the global batch.")
@_opt("--jit-compile/--no-jit-compile", key="jit_compile",
      help="[runtime] Force XLA on or off (auto: on for JAX and TF-on-GPU).")
def train(config_file, resume, restart_stage, assignments, paper_objective, print_config, output,
          **options):
    """Train ABN, then the Attention Mining Network (AMB + PC + COT) initialised from it.

    Beyond the paper, the default objective adds an area term on the
    attention map (--area-weight 1) and lets the mining terms move the map
    alone (--amb-gradient attention): with the paper's objective the trained
    map covers nearly everything and the classifier barely uses it; with
    these two the map sits on the evidence and the prediction depends on it
    (METHOD.md, "The default objective"). --paper-objective trains the
    paper's objective.

    Each option overrides the config; [config: key, default X] names the
    config key it sets and the value the default config (synthetic) gives it.
    --set reaches every key, options or not. The [section] of each option is
    where its key lives in the typed config (`keras_amb.app.run_config`).

    \b
    Examples:
      keras-amb train --dataset synthetic
      keras-amb train --dataset synthetic --config synthetic_v2
      keras-amb train --dataset stanford_dogs --data-dir ~/tensorflow_datasets
      keras-amb train --dataset stanford_dogs --config stanford_dogs_paper    # from scratch
      keras-amb train --dataset ./my_images --backbone resnet_small --image-size 96 --weights none
      keras-amb train --dataset ./digits --config small_images                  # 32x32 images
      keras-amb train --dataset caltech_birds2010 --no-cot        # AMB + PC ablation
      keras-amb train --dataset synthetic --paper-objective       # the paper's eq. 5
      keras-amb train --set model.pc_weight=1 --set optimizer.momentum=0.8
      keras-amb train --resume saved_models/synthetic-mining-20260101-120000
    """
    refuse_backend_assignment(assignments)
    if not resume:
        # The config is read and checked first: a bad value, or
        # --print-config, answers without TensorFlow's imports.
        set_backend(options.get("backend"), load=False)
    if restart_stage and not resume:
        raise click.UsageError("--restart-stage goes with --resume RUN")
    run_reporting_errors(_train, config_file, resume, assignments, print_config, output,
                         options, paper_objective, restart_stage)


def _train(config_file, resume, assignments, print_config, output, options,
           paper_objective=False, restart_stage=False):
    import os

    from keras_amb.app import config as amb_config

    given_options = {_KEYS[name]: value for name, value in options.items() if value is not None}
    overrides = dict(arguments.PAPER_OBJECTIVE) if paper_objective else {}
    overrides.update(given_options)
    option_names = {_KEYS[name]: "--" + name.replace("_", "-") for name in options}
    if resume:
        given = sorted(option_names[k] for k in given_options if k != "backend")
        given += ["--paper-objective"] if paper_objective else []
        given += [f"--set {a}" for a in assignments]
        if given or config_file or output:
            raise click.UsageError(
                "--resume continues a run with its saved config; do not combine it "
                f"with other options (got: {', '.join(given) or '--config/--output'})"
            )
        from keras_amb.app import runs

        path = os.path.join(resume, "config.yaml")
        if not os.path.isfile(path):
            raise amb_config.ConfigError(f"{resume}: no config.yaml; not a keras-amb run folder")
        run = runs.Run.open(resume)  # opened once: trainer.resume takes it
        if run.check_state().get("finished"):
            click.echo(f"{resume} is already finished; nothing to resume (nothing changed).")
            return
        # The run's own backend, before anything imports Keras.
        saved_backend = amb_config.load_yaml(path).get("backend")
        if saved_backend not in (None, *BACKENDS):
            raise amb_config.ConfigError(
                f"{path}: backend must be tensorflow, jax or torch, got {saved_backend!r}")
        set_backend(saved_backend or options.get("backend"), load=False)
        if print_config:
            click.echo(amb_config.to_yaml(amb_config.resolve(path).to_dict()), nl=False)
            return
        config = None  # trainer.resume reads the run's own
    else:
        config = amb_config.resolve(config_file, overrides, assignments,
                                    option_names=option_names)
        if print_config:
            click.echo(amb_config.to_yaml(config.to_dict()), nl=False)
            return

    load_backend()
    from keras_amb.app import trainer

    log = lambda line: click.echo(line)  # noqa: E731
    # --verbose: Keras's epoch line with every logged value; else a short one.
    verbose = 2 if _verbose() else None
    if resume:
        result = trainer.resume(run, log=log, verbose=verbose, restart_stage=restart_stage)
    else:
        result = trainer.train(config, run_dir=output, log=log, verbose=verbose)
    m = result.test_metrics
    click.echo(
        f"\nTest: top-1 {m.get('top1', float('nan')):.4f}, top-5 "
        f"{m.get('top5', float('nan')):.4f}, attention-branch top-1 "
        f"{m.get('att_top1', float('nan')):.4f}"
    )
    click.echo(f"Run folder: {result.run_dir}")
    click.echo(f"  model:   {result.model_path}")
    click.echo("  config.yaml, history.csv, labels.txt, checkpoints/, logs/ (TensorBoard)")
    click.echo(f"Next: keras-amb visualize IMAGE --model {result.run_dir}")
    click.echo(f"      keras-amb evaluate --model {result.run_dir}")
