"""Command line: ``dermsynth --help``. Thin: parse options, build a config, call one function."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from dermsynth import __version__
from dermsynth.config import ConfigError, DataConfig, SplitConfig
from dermsynth.data.index import DataError


def _clean_errors(fn):
    """Bad input ends with one clear line on stderr and exit status 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DataError, ConfigError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)

    return wrapper


def _warn(messages: list[str]) -> None:
    for message in messages:
        click.echo(f"warning: {message}", err=True)


def _open(root: Path, fmt: str):
    from dermsynth.data.index import open_index

    index = open_index(root, fmt)
    _warn(index.warnings)
    return index


FORMAT = click.option(
    "--format", "fmt", default="auto", show_default=True,
    type=click.Choice(["auto", "ham10000", "folder", "dermamnist"]),
    help="Dataset layout.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dermsynth")
def main() -> None:
    """dermsynth: class-conditional GANs for dermoscopy (HAM10000), evaluated honestly."""


@main.group()
def data() -> None:
    """Read, summarise, split, cache, download or draw (phantom) datasets."""


@data.command()
@click.argument("root", type=click.Path(path_type=Path))
@FORMAT
@_clean_errors
def summary(root: Path, fmt: str) -> None:
    """Images and lesions per class (the paper's Table II)."""
    from dermsynth.data.summary import format_class_table

    index = _open(root, fmt)
    click.echo(f"{root} ({index.source})")
    click.echo(format_class_table(index))


@data.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Split file to write [default: splits/<data folder>-seed<SEED>.json].")
@click.option("--fractions", default="0.7,0.1,0.2", show_default=True, help="train,val,test shares.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Replace an existing split file.")
@FORMAT
@_clean_errors
def split(root: Path, out: Path | None, fractions: str, seed: int, force: bool, fmt: str) -> None:
    """Lesion-grouped, class-stratified train/val/test split, saved for every later stage."""
    from dermsynth.data.splits import make_split, save_split
    from dermsynth.data.summary import format_split_table

    try:
        shares = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise ConfigError(f"--fractions: {fractions!r} is not three comma-separated numbers") from None
    cfg = SplitConfig(fractions=shares, seed=seed)
    out = out or Path("splits") / f"{Path(root).stem or 'data'}-seed{seed}.json"
    if out.exists() and not force:
        raise DataError(f"{out} exists; pass --force to replace it or --out to write elsewhere")
    index = _open(root, fmt)
    result = make_split(index, cfg.fractions, cfg.seed)
    save_split(result, out, index)
    click.echo(format_split_table(result, index))
    click.echo(f"split written to {out}")


@data.command()
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to create.")
@click.option("--per-class", default=100, show_default=True, type=int, help="Images per class.")
@click.option("--size", default=128, show_default=True, type=int, help="Image width in pixels.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--overwrite", is_flag=True, help="Replace an existing folder.")
@_clean_errors
def phantom(out: Path, per_class: int, size: int, seed: int, overwrite: bool) -> None:
    """Draw procedural phantom lesions (NOT medical data) in the HAM10000 layout."""
    from dermsynth.data.phantom import make_phantom

    root = make_phantom(out, per_class=per_class, size=size, seed=seed, overwrite=overwrite)
    click.echo(f"phantom data (not medical data): {per_class} images x 7 classes in {root}")


@data.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--resolution", default=64, show_default=True, type=int, help="32, 64, 128 or 256.")
@click.option("--crop", default="center", show_default=True, type=click.Choice(["center", "full", "pad"]))
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Cache folder [default: $DERMSYNTH_CACHE or ~/.cache/dermsynth].")
@click.option("--on-corrupt", default="skip", show_default=True, type=click.Choice(["skip", "fail"]),
              help="Undecodable images: skip and list them, or stop.")
@click.option("--rebuild", is_flag=True, help="Rebuild even if the cache is up to date.")
@FORMAT
@_clean_errors
def prepare(root: Path, resolution: int, crop: str, cache_dir: Path | None, on_corrupt: str,
            rebuild: bool, fmt: str) -> None:
    """Decode, crop and resize every image once into the uint8 cache."""
    from dermsynth.data.cache import load_cache

    cfg = DataConfig(root=root, format=fmt, resolution=resolution, crop=crop, cache_dir=cache_dir,
                     on_corrupt=on_corrupt)
    index = _open(cfg.root, cfg.format)
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
    from dermsynth.data.download import DownloadError, download_ham10000

    try:
        root = download_ham10000(to, base_url=base_url, keep_archives=keep_archives)
    except DownloadError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    click.echo(f"HAM10000 is ready in {root}; try: dermsynth data summary {root}")


if __name__ == "__main__":
    main()
