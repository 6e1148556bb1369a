"""Fault catalogue, configs: every value is typed by its field, and --dry-run catches what training would.

Each test is named after the fault it pins: a bad value ends in exit status 2 and one message naming
section.key, the value given and the type expected, never a traceback and never a run that fails later.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import dermsynth.config as config
from dermsynth.cli import main
from dermsynth.config import (ConfigError, PhantomConfig, classifier_config, from_dict, gan_config, load_yaml,
                              parse_assignments)
from dermsynth.pipeline import Study
from tests.conftest import read_rows

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def dry_run(*sets: str, command: str = "train-gan", preset: str | Path = "paper.yaml"):
    args = [command, "--config", str(CONFIGS / preset), "--data", "unused", "--out", "unused", "--dry-run"]
    return CliRunner().invoke(main, args + [x for s in sets for x in ("--set", s)])


def refused(result, *problems: str, what: str = "GAN config") -> None:
    """The command stopped cleanly (exit 2, no traceback) listing exactly ``problems``."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2
    assert result.output == f"error: invalid {what}:\n" + "".join(f"  - {p}\n" for p in problems)


def resolved(result) -> dict:
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


# --- numbers ---------------------------------------------------------------------------------------------


def test_set_float_in_exponent_notation_is_a_float():
    cfg = resolved(dry_run("optim.g_lr=2e-4", "optim.d_lr=1E-3", "loss.gp_weight=1e1"))
    assert (cfg["optim"]["g_lr"], cfg["optim"]["d_lr"], cfg["loss"]["gp_weight"]) == (2e-4, 1e-3, 10.0)
    assert all(isinstance(v, float) for v in (cfg["optim"]["g_lr"], cfg["optim"]["d_lr"], cfg["loss"]["gp_weight"]))


def test_float_in_exponent_notation_in_a_classifier_model_is_a_float():
    cfg = resolved(dry_run("model.conv_dropout=2e-1", "train.lr=1e-3", "train.epochs=3.0",
                           command="train-classifier", preset="classifier-paper.yaml"))
    assert (cfg["model"]["conv_dropout"], cfg["train"]["lr"], cfg["train"]["epochs"]) == (0.2, 1e-3, 3)
    assert isinstance(cfg["train"]["epochs"], int)


def test_text_where_a_float_belongs_is_named():
    refused(dry_run("optim.g_lr=fast"), "optim.g_lr: expected a number, got 'fast'")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "1e999"])
def test_float_that_is_nan_or_infinite_is_refused(value):
    given = yaml.safe_load(value)
    refused(dry_run(f"loss.gp_weight={value}"), f"loss.gp_weight: expected a number, got {given!r}")


def test_set_non_integer_batch_size_is_refused_by_dry_run():
    refused(dry_run("train.batch_size=3.5"), "train.batch_size: expected an integer, got 3.5")


def test_set_text_batch_size_is_named_not_a_traceback():
    refused(dry_run("train.batch_size=abc"), "train.batch_size: expected an integer, got 'abc'")


def test_integral_float_for_an_integer_is_an_integer():
    cfg = resolved(dry_run("train.batch_size=32.0", "generator.z_dim=1e2"))
    assert cfg["train"]["batch_size"] == 32 and isinstance(cfg["train"]["batch_size"], int)
    assert cfg["generator"]["z_dim"] == 100 and isinstance(cfg["generator"]["z_dim"], int)


def test_bool_where_an_integer_belongs_is_refused():
    refused(dry_run("train.snapshot_ticks=true"), "train.snapshot_ticks: expected an integer, got True")


# --- seeds -----------------------------------------------------------------------------------------------


def test_set_seed_as_text_is_refused_by_dry_run():
    refused(dry_run("train.seed=abc"), "train.seed: expected an integer, got 'abc'")


@pytest.mark.parametrize("seed", [2**32, -1])
def test_seed_beyond_32_bits_is_refused(seed):
    assert config.MAX_SEED == 2**32 - 1
    refused(dry_run(f"train.seed={seed}", f"split.seed={seed}"),
            f"split.seed: expected an integer in [0, 4294967295], got {seed}",
            f"train.seed: expected an integer in [0, 4294967295], got {seed}")
    assert resolved(dry_run("train.seed=4294967295"))["train"]["seed"] == 2**32 - 1


# --- booleans, text, paths, tuples -----------------------------------------------------------------------


@pytest.mark.parametrize("value, given", [("maybe", "'maybe'"), ("1", "1"), ("'true'", "'true'")])
def test_bool_from_text_maybe_is_refused(value, given):
    refused(dry_run(f"train.dihedral={value}"), f"train.dihedral: expected true or false, got {given}")


def test_bool_from_text_is_refused_for_the_classifier_too():
    refused(dry_run("train.dihedral=maybe", command="train-classifier", preset="classifier-paper.yaml"),
            "train.dihedral: expected true or false, got 'maybe'", what="classifier config")


def test_number_where_text_belongs_is_refused():
    refused(dry_run("loss.kind=1"), "loss.kind: expected text, got 1")


def test_tuple_item_that_is_not_a_number_is_named():
    refused(dry_run("optim.betas=[0.5, fast]"), "optim.betas: expected a list of 2 numbers, got [0.5, 'fast']")


def test_fixed_length_tuple_of_wrong_length_is_named():
    refused(dry_run("split.fractions=[0.5, 0.5]"), "split.fractions: expected a list of 3 numbers, got [0.5, 0.5]")


def test_tuple_of_integers_refuses_fractions():
    refused(dry_run("model.widths=[32, 64.5]", command="train-classifier", preset="classifier-paper.yaml"),
            "model.widths: expected a list of integers, got [32, 64.5]", what="classifier config")


def test_optional_integer_refuses_text_and_takes_null():
    refused(dry_run("discriminator.backbone_resolution=big"),
            "discriminator.backbone_resolution: expected an integer or null, got 'big'")
    assert resolved(dry_run("discriminator.backbone_resolution=null"))["discriminator"]["backbone_resolution"] is None


# --- sections and overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize("body, given", [("5", "5"), ("[1, 2]", "[1, 2]")])
def test_section_that_is_not_a_mapping_is_named(tmp_path, body, given):
    preset = tmp_path / "bad.yaml"
    preset.write_text((CONFIGS / "paper.yaml").read_text().split("\ntrain:")[0] + f"\ntrain: {body}\n")
    refused(dry_run(preset=preset), f"train: expected a mapping of options, got {given}")
    refused(dry_run("train.epochs=2", preset=preset), f"train: expected a mapping of options, got {given}")


def test_set_value_that_is_not_yaml_is_named():
    result = dry_run("train.diffaugment=[color")
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2
    assert result.output.startswith("error: invalid --set option(s):\n  - --set 'train.diffaugment=[color': "
                                    "the value is not valid YAML (")


@pytest.mark.parametrize("item", ["=5", "train.=3", ".x=1", "train", "train.epochs"])
def test_set_item_without_section_key_and_value_is_named(item):
    refused(dry_run(item), f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.epochs=2", what="--set option(s)")


def test_utility_options_are_parsed_and_every_bad_one_named():
    assert parse_assignments(("seeds=[0, 1]", " topup_to = 12", "arms=[real,filter]"), "--utility", "seeds=[0]") == \
        {"seeds": [0, 1], "topup_to": 12, "arms": ["real", "filter"]}
    with pytest.raises(ConfigError) as e:
        parse_assignments(("seeds", "=3", "arms=[real"), "--utility", "seeds=[0,1,2]")
    assert str(e.value).startswith(
        "invalid --utility option(s):\n  - --utility 'seeds': expected KEY=VALUE, e.g. seeds=[0,1,2]\n"
        "  - --utility '=3': expected KEY=VALUE, e.g. seeds=[0,1,2]\n"
        "  - --utility 'arms=[real': the value is not valid YAML (")


def test_set_unknown_section_is_reported_with_the_other_problems():
    refused(dry_run("trian.epochs=2", "train.batch_size=abc"),
            "--set: unknown section 'trian' (known: data, split, generator, discriminator, loss, optim, train)",
            "train.batch_size: expected an integer, got 'abc'")


def test_mistyped_resolution_is_one_problem_not_one_per_section():
    refused(dry_run("data.resolution=abc"), "data.resolution: expected an integer, got 'abc'")


def test_every_problem_is_reported_at_once():
    raw = load_yaml(CONFIGS / "paper.yaml")
    raw["name"] = 5
    raw["loss"] = "bce"
    raw["train"] = {**raw["train"], "speed": 2}
    with pytest.raises(ConfigError) as e:
        gan_config(raw, ["data.crop=1", "split.seed=-1", "generator.z_dim=many", "discriminator.spectral_norm=yes!",
                         "optim.betas=[0.5]", "train.batch_size=3.5", "train.seed=abc", "train.dihedral=maybe",
                         "train.total_kimg=lots"])
    assert str(e.value) == "\n  - ".join([
        "invalid GAN config:",
        "name: expected text, got 5",
        "data.crop: expected text, got 1",
        "split.seed: expected an integer in [0, 4294967295], got -1",
        "generator.z_dim: expected an integer, got 'many'",
        "discriminator.spectral_norm: expected true or false, got 'yes!'",
        "loss: expected a mapping of options, got 'bce'",
        "optim.betas: expected a list of 2 numbers, got [0.5]",
        "train: unknown option(s) speed (known: amp, batch_size, channels_last, class_sampling, diffaugment, "
        "dihedral, divergence_max_grad_norm, divergence_max_loss, divergence_zero_grad_steps, ema_halflife_kimg, "
        "ema_rampup, epochs, grid_columns, keep_checkpoints, max_minutes, seed, snapshot_ticks, tick_kimg, "
        "total_kimg)",
        "train.batch_size: expected an integer, got 3.5",
        "train.total_kimg: expected a number or null, got 'lots'",
        "train.seed: expected an integer, got 'abc'",
        "train.dihedral: expected true or false, got 'maybe'",
    ])


def test_every_classifier_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        classifier_config({"data": {"resolution": 32}, "model": {"widths": "wide"},
                           "train": {"epochs": 2.5, "lr": "fast", "seed": 2**40}})
    assert str(e.value) == "\n  - ".join([
        "invalid classifier config:",
        "model.widths: expected a list of integers, got 'wide'",
        "train.epochs: expected an integer, got 2.5",
        "train.lr: expected a number, got 'fast'",
        f"train.seed: expected an integer in [0, 4294967295], got {2**40}",
    ])


def test_from_dict_types_every_value():
    assert from_dict(PhantomConfig, {"per_class": "10", "size": 6.4e1}, "phantom") == PhantomConfig(10, 64, 0)
    with pytest.raises(ConfigError) as e:
        from_dict(PhantomConfig, {"per_class": "ten", "seed": 2**32}, "phantom")
    assert str(e.value) == ("invalid phantom config:\n  - phantom.per_class: expected an integer, got 'ten'"
                            "\n  - phantom.seed: expected an integer in [0, 4294967295], got 4294967296")


def test_study_with_a_mistyped_override_is_refused_up_front(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "gan": {"preset": str(CONFIGS / "demo.yaml"), "set": ["train.batch_size=abc"]},
        "judge": {"preset": str(CONFIGS / "classifier-tiny.yaml"), "set": ["train.dihedral=maybe"]},
        "utility": {"preset": str(CONFIGS / "classifier-tiny.yaml"), "set": []},
    }))
    with pytest.raises(ConfigError) as e:
        Study(study, tmp_path / "out")
    assert str(e.value) == (
        "invalid study config:\n"
        "  - gan: invalid GAN config:\n  - train.batch_size: expected an integer, got 'abc'\n"
        "  - judge: invalid classifier config:\n  - train.dihedral: expected true or false, got 'maybe'")


def test_study_sections_are_typed_and_every_problem_named(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("phantom: {per_class: abc, size: 6.4e1}\nsplit: {fractions: [0.5, 0.1, 0.1]}\ngenerate: 5\n"
                     "utility: {seeds: [0, x], topup: 3}\n")
    code = CliRunner().invoke(main, ["run", "--config", str(study), "--out", str(tmp_path / "out")])
    assert code.exit_code == 2 and isinstance(code.exception, SystemExit)
    assert code.output == (
        f"error: {study}: invalid study config:\n"
        "  - phantom.per_class: expected an integer, got 'abc'\n"
        "  - split.fractions: must sum to 1, got 0.7\n"
        "  - generate: expected a mapping of options, got 5\n"
        "  - utility: unknown option(s) topup (known: arms, external, filter_confidence, filter_max_draws, preset, "
        "pretrain_epochs, ratio, real_fraction, seeds, set, synthetic_per_class, synthetic_seed, topup_to)\n"
        "  - utility.seeds: expected a list of integers, got [0, 'x']\n")
    assert not (tmp_path / "out").exists()


def test_yaml_payload_in_a_config_runs_no_code(tmp_path):
    config = tmp_path / "evil.yaml"
    config.write_text(f"train: !!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n")
    code = CliRunner().invoke(main, ["train-gan", "--config", str(config), "--data", str(tmp_path), "--out",
                                     str(tmp_path / "out"), "--dry-run"])
    assert code.exit_code == 2 and f"error: {config}: not valid YAML" in code.output
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


# --- metadata rows ---------------------------------------------------------------------------------------


def summary_of_bad_row(ham: Path, line: str):
    meta = ham / "HAM10000_metadata.csv"
    lines = meta.read_text().splitlines()
    lines[3] = line  # the third row
    meta.write_text("\n".join(lines) + "\n")
    return CliRunner().invoke(main, ["data", "summary", str(ham)])


def test_metadata_row_with_extra_field_names_file_and_row(ham):
    row = read_rows(ham / "HAM10000_metadata.csv")[2]
    result = summary_of_bad_row(ham, f"{row['lesion_id']},{row['image_id']},{row['dx']},extra")
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2
    assert result.output == "error: HAM10000_metadata.csv, line 4: 4 fields, but the header has 3\n"


def test_metadata_row_with_a_missing_field_names_file_and_row(ham):
    row = read_rows(ham / "HAM10000_metadata.csv")[2]
    result = summary_of_bad_row(ham, f"{row['image_id']},{row['dx']}")
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2
    assert result.output == "error: HAM10000_metadata.csv, line 4: 2 fields, but the header has 3\n"
