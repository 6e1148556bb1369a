"""Fault catalogue, configs: every value is typed by its field, and --dry-run catches what training would.

Each test is named after the fault it pins: a bad value ends in exit status 2 and one line per problem naming
its dotted path (section.key, an item as key[i]), what it must be and the value given, never a traceback and
never a run that fails later.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import dermsynth.config as config
from dermsynth.cli import main
from dermsynth.config import ConfigError, PhantomConfig, classifier_config, gan_config, load_yaml, parse_assignments
from dermsynth.study.pipeline import Study
from dermsynth.schema import validated
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


def test_an_integer_given_for_a_float_stays_as_written():
    # Saved configs and a study's stage keys hash the values as written: 10 must not become 10.0.
    cfg = resolved(dry_run("loss.r1_gamma=10", "loss.gp_weight=0.5"))
    assert cfg["loss"]["r1_gamma"] == 10 and isinstance(cfg["loss"]["r1_gamma"], int)
    assert isinstance(cfg["loss"]["gp_weight"], float)


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


def test_out_of_range_values_name_their_bound():
    refused(dry_run("optim.g_lr=-1", "train.batch_size=1", "optim.betas=[0.5, 1]", "loss.r1_gamma=-0.5"),
            "loss.r1_gamma: must be >= 0, got -0.5",
            "optim.g_lr: must be > 0, got -1",
            "optim.betas[1]: must be < 1, got 1",
            "train.batch_size: must be >= 2, got 1")


# --- seeds -----------------------------------------------------------------------------------------------


def test_set_seed_as_text_is_refused_by_dry_run():
    refused(dry_run("train.seed=abc"), "train.seed: expected an integer, got 'abc'")


@pytest.mark.parametrize("seed, bound", [(2**32, "<= 4294967295"), (-1, ">= 0")])
def test_seed_beyond_32_bits_is_refused(seed, bound):
    assert config.MAX_SEED == 2**32 - 1
    refused(dry_run(f"train.seed={seed}", f"split.seed={seed}"),
            f"split.seed: must be {bound}, got {seed}",
            f"train.seed: must be {bound}, got {seed}")
    assert resolved(dry_run("train.seed=4294967295"))["train"]["seed"] == 2**32 - 1


# --- booleans, text, choices, paths, lists ---------------------------------------------------------------


@pytest.mark.parametrize("value, given", [("maybe", "'maybe'"), ("1", "1"), ("'true'", "'true'"), ("yes", "'yes'"),
                                          ("no", "'no'"), ("on", "'on'"), ("off", "'off'"), ("Y", "'Y'")])
def test_a_boolean_is_true_or_false_only(value, given):
    # YAML 1.1 reads yes/no/on/off as booleans; the README says booleans are true or false, and so do configs.
    refused(dry_run(f"train.dihedral={value}"), f"train.dihedral: expected true or false, got {given}")


@pytest.mark.parametrize("value, expected", [("true", True), ("false", False), ("True", True), ("FALSE", False)])
def test_true_and_false_are_booleans(value, expected):
    assert resolved(dry_run(f"train.dihedral={value}"))["train"]["dihedral"] is expected


def test_yes_in_a_config_file_is_refused_too(tmp_path):
    preset = tmp_path / "yes.yaml"
    preset.write_text("name: yes\ntrain: {channels_last: yes, amp: on}\ndata: {follow_links: true}\n")
    refused(dry_run(preset=preset), "train.amp: expected one of auto, bf16, none, got 'on'",
            "train.channels_last: expected true or false, got 'yes'")


def test_bool_from_text_is_refused_for_the_classifier_too():
    refused(dry_run("train.dihedral=maybe", command="train-classifier", preset="classifier-paper.yaml"),
            "train.dihedral: expected true or false, got 'maybe'", what="classifier config")


def test_a_choice_given_on_names_the_choices():
    # `on` is text where text belongs (YAML 1.1 would make it true, and the choice would say "expected text").
    refused(dry_run("train.amp=on"), "train.amp: expected one of auto, bf16, none, got 'on'")
    refused(dry_run("train.amp=on", command="train-classifier", preset="classifier-paper.yaml"),
            "train.amp: expected one of auto, bf16, none, got 'on'", what="classifier config")
    assert resolved(dry_run("train.amp=bf16"))["train"]["amp"] == "bf16"


def test_a_number_where_a_word_belongs_is_taken_as_the_text_written():
    refused(dry_run("loss.kind=1"), "loss.kind: expected one of bce, hinge, wgan, got '1'")
    refused(dry_run("data.resolution=48"), "data.resolution: expected one of 32, 64, 128, 256, got 48")


def test_a_path_option_takes_the_text_as_written_and_null_where_it_may_be_none():
    cfg = resolved(dry_run("data.cache_dir=/tmp/on", "discriminator.backbone_weights=null"))
    assert cfg["data"]["cache_dir"] == "/tmp/on" and cfg["discriminator"]["backbone_weights"] is None
    assert resolved(dry_run("data.cache_dir="))["data"]["cache_dir"] is None


def test_tuple_item_that_is_not_a_number_is_named():
    refused(dry_run("optim.betas=[0.5, fast]"), "optim.betas[1]: expected a number, got 'fast'")


def test_fixed_length_tuple_of_wrong_length_is_named():
    refused(dry_run("split.fractions=[0.5, 0.5]"), "split.fractions: expected 3 items, got [0.5, 0.5]")
    refused(dry_run("optim.betas=[0.5, 0.9, 0.9]"), "optim.betas: expected 2 items, got [0.5, 0.9, 0.9]")


def test_tuple_of_integers_refuses_fractions():
    refused(dry_run("model.widths=[32, 64.5]", command="train-classifier", preset="classifier-paper.yaml"),
            "model.widths[1]: expected an integer, got 64.5", what="classifier config")


def test_optional_integer_refuses_text_and_takes_null():
    refused(dry_run("discriminator.backbone_resolution=big"),
            "discriminator.backbone_resolution: expected one of 32, 64, 96, 128, 160, 192, 224, 256, or null, "
            "got 'big'")
    refused(dry_run("train.total_kimg=lots"), "train.total_kimg: expected a number or null, got 'lots'")
    assert resolved(dry_run("discriminator.backbone_resolution=null"))["discriminator"]["backbone_resolution"] is None


# --- sections and overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize("body, given", [("5", "5"), ("[1, 2]", "[1, 2]")])
def test_section_that_is_not_a_mapping_is_named(tmp_path, body, given):
    preset = tmp_path / "bad.yaml"
    preset.write_text((CONFIGS / "paper.yaml").read_text().split("\ntrain:")[0] + f"\ntrain: {body}\n")
    refused(dry_run(preset=preset), f"train: expected a mapping of options, got {given}")
    refused(dry_run("train.epochs=2", preset=preset), f"train: expected a mapping of options, got {given}")


def test_set_value_that_is_not_yaml_is_named():
    result = dry_run("train.epochs=[1")
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2
    assert result.output.startswith("error: invalid --set option(s):\n  - --set 'train.epochs=[1': "
                                    "the value is not valid YAML (")


@pytest.mark.parametrize("item", ["=5", "train.=3", ".x=1", "train", "train.epochs"])
def test_set_item_without_section_key_and_value_is_named(item):
    refused(dry_run(item), f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.epochs=2", what="--set option(s)")


def test_utility_options_are_parsed_and_every_bad_one_named():
    from dermsynth.evaluation.utility import UtilityConfig

    assert parse_assignments(("seeds=[0, 1]", " topup_to = 12", "arms=[real,filter]"), "--utility", "seeds=[0]",
                             UtilityConfig) == {"seeds": [0, 1], "topup_to": 12, "arms": ["real", "filter"]}
    with pytest.raises(ConfigError) as e:
        parse_assignments(("seeds", "=3", "arms=[real"), "--utility", "seeds=[0,1,2]")
    assert str(e.value).startswith(
        "invalid --utility option(s):\n  - --utility 'seeds': expected KEY=VALUE, e.g. seeds=[0,1,2]\n"
        "  - --utility '=3': expected KEY=VALUE, e.g. seeds=[0,1,2]\n"
        "  - --utility 'arms=[real': the value is not valid YAML (")


def test_set_unknown_section_is_reported_with_the_other_problems():
    refused(dry_run("trian.epochs=2", "train.batch_size=abc"),
            "train.batch_size: expected an integer, got 'abc'",
            "trian: unknown section (known: data, split, generator, discriminator, loss, optim, train, name)")


def test_mistyped_resolution_is_one_problem_not_one_per_section():
    refused(dry_run("data.resolution=abc"), "data.resolution: expected one of 32, 64, 128, 256, got 'abc'")


def test_checks_across_fields_name_the_field():
    refused(dry_run("generator.resolution=32", "loss.pixel_weight=2"),
            "loss.pixel_weight: weighs a head of a hybrid discriminator; discriminator.arch is dcgan",
            "generator.resolution: must equal data.resolution (64), got 32")
    refused(dry_run("train.warmup_epochs=100", "train.select=average", "train.patience=3",
                    command="train-classifier", preset="classifier-paper.yaml"),
            "train.warmup_epochs: must be <= epochs (50), got 100",
            "train.patience: stops on the best val epoch: it needs select best", what="classifier config")


def test_every_problem_is_reported_at_once():
    raw = load_yaml(CONFIGS / "paper.yaml")
    raw["name"] = 5
    raw["loss"] = "bce"
    raw["train"] = {**raw["train"], "speed": 2}
    with pytest.raises(ConfigError) as e:
        gan_config(raw, ["data.crop=1", "split.seed=-1", "generator.z_dim=many", "discriminator.spectral_norm=yes!",
                         "optim.betas=[0.5]", "train.batch_size=3.5", "train.seed=abc", "train.dihedral=yes",
                         "train.total_kimg=lots"])
    assert str(e.value) == "\n  - ".join([
        "invalid GAN config:",
        "data.crop: expected one of center, full, pad, got '1'",
        "split.seed: must be >= 0, got -1",
        "generator.z_dim: expected an integer, got 'many'",
        "discriminator.spectral_norm: expected true or false, got 'yes!'",
        "loss: expected a mapping of options, got 'bce'",
        "optim.betas: expected 2 items, got [0.5]",
        "train.batch_size: expected an integer, got 3.5",
        "train.total_kimg: expected a number or null, got 'lots'",
        "train.seed: expected an integer, got 'abc'",
        "train.dihedral: expected true or false, got 'yes'",
        "train.speed: unknown option (known: batch_size, epochs, total_kimg, max_minutes, seed, dihedral, "
        "diffaugment, class_sampling, ema_halflife_kimg, ema_rampup, tick_kimg, snapshot_ticks, keep_checkpoints, "
        "amp, channels_last, grid_columns, divergence_max_loss, divergence_max_grad_norm, "
        "divergence_zero_grad_steps)",
        "name: expected text, got 5",
    ])


def test_every_classifier_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        classifier_config({"data": {"resolution": 32}, "model": {"widths": "wide"},
                           "train": {"epochs": 2.5, "lr": "fast", "seed": 2**40}})
    assert str(e.value) == "\n  - ".join([
        "invalid classifier config:",
        "model.widths: expected a list, got 'wide'",
        "train.epochs: expected an integer, got 2.5",
        "train.lr: expected a number, got 'fast'",
        f"train.seed: must be <= 4294967295, got {2**40}",
    ])


def test_a_section_is_typed_by_its_model_every_problem_named():
    assert validated(PhantomConfig, {"per_class": "10", "size": "6.4e1"}, "invalid phantom config",
                     ("phantom",)) == PhantomConfig(per_class=10, size=64, seed=0)
    with pytest.raises(ConfigError) as e:
        validated(PhantomConfig, {"per_class": "ten", "seed": 2**32}, "invalid phantom config", ("phantom",))
    assert str(e.value) == ("invalid phantom config:\n  - phantom.per_class: expected an integer, got 'ten'"
                            "\n  - phantom.seed: must be <= 4294967295, got 4294967296")


def test_every_section_describes_every_option():
    from pydantic import BaseModel

    from dermsynth.evaluation.probe import ProbeConfig
    from dermsynth.study.config import StudyConfig

    def models(cls):
        yield cls
        for field in cls.model_fields.values():
            kind = field.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from models(kind)

    undescribed = [f"{cls.__name__}.{name}" for root in (config.GanConfig, config.ClassifierRunConfig, StudyConfig,
                                                          ProbeConfig)
                   for cls in models(root) for name, field in cls.model_fields.items() if not field.description]
    assert not undescribed


# --- config files ----------------------------------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    preset = tmp_path / "latin1.yaml"
    preset.write_bytes("name: d\xe9mo\n".encode("latin-1"))
    for args in (["train-gan", "--config", str(preset), "--data", "d", "--out", str(tmp_path / "o"), "--dry-run"],
                 ["run", "--config", str(preset), "--out", str(tmp_path / "o")]):
        result = CliRunner().invoke(main, args)
        assert isinstance(result.exception, SystemExit) and result.exit_code == 2
        assert result.output == f"error: {preset}: not UTF-8 text (byte 7); save the config as UTF-8\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("body", ["", "# only a comment\n", "\n\n"])
def test_an_empty_config_file_is_refused_not_run_with_every_default(tmp_path, body):
    preset = tmp_path / "empty.yaml"
    preset.write_text(body)
    for args in (["train-gan", "--config", str(preset), "--data", "d", "--out", str(tmp_path / "o"), "--dry-run"],
                 ["train-classifier", "--config", str(preset), "--data", "d", "--out", str(tmp_path / "o")],
                 ["run", "--config", str(preset), "--out", str(tmp_path / "o")]):
        result = CliRunner().invoke(main, args)
        assert isinstance(result.exception, SystemExit) and result.exit_code == 2
        assert result.output == (f"error: {preset}: the config file is empty (no sections); write the options it "
                                 "changes, or use a shipped preset (`dermsynth presets`)\n")
    assert not (tmp_path / "o").exists()


def test_study_with_a_mistyped_override_is_refused_up_front(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "gan": {"preset": str(CONFIGS / "demo.yaml"), "set": ["train.batch_size=abc"]},
        "judge": {"preset": str(CONFIGS / "classifier-tiny.yaml"), "set": ["train.dihedral=yes"]},
        "utility": {"preset": str(CONFIGS / "classifier-tiny.yaml"), "set": []},
    }))
    with pytest.raises(ConfigError) as e:
        Study(study, tmp_path / "out")
    assert str(e.value) == (
        "invalid study config:\n"
        "  - gan: invalid GAN config:\n  - train.batch_size: expected an integer, got 'abc'\n"
        "  - judge: invalid classifier config:\n  - train.dihedral: expected true or false, got 'yes'")


def test_study_sections_are_typed_and_every_problem_named(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("phantom: {per_class: abc, size: 6.4e1}\nsplit: {fractions: [0.5, 0.1, 0.1]}\ngenerate: 5\n"
                     "utility: {seeds: [0, x], topup: 3, arms: [real, mixup]}\ndata_checks: {follow_links: on}\n"
                     "gan: {set: train.epochs=2}\nextra: 1\n")
    code = CliRunner().invoke(main, ["run", "--config", str(study), "--out", str(tmp_path / "out")])
    assert code.exit_code == 2 and isinstance(code.exception, SystemExit)
    assert code.output == (
        f"error: {study}: invalid study config:\n"
        "  - phantom.per_class: expected an integer, got 'abc'\n"
        "  - split.fractions: must sum to 1, got 0.7\n"
        "  - gan.set: expected a list, got 'train.epochs=2'\n"
        "  - generate: expected a mapping of options, got 5\n"
        "  - utility.arms[1]: expected one of real, half, shuffled, topup, ratio, balanced, pretrain, filter, "
        "synthetic, got 'mixup'\n"
        "  - utility.seeds[1]: expected an integer, got 'x'\n"
        "  - utility.topup: unknown option (known: arms, seeds, topup_to, ratio, real_fraction, pretrain_epochs, "
        "filter_confidence, filter_max_draws, synthetic_per_class, synthetic_seed, preset, set, external)\n"
        "  - data_checks.follow_links: expected true or false, got 'on'\n"
        "  - extra: unknown section (known: name, phantom, split, gan, judge, feature_judge, generate, detection, "
        "metrics, probe, utility, data_checks)\n")
    assert not (tmp_path / "out").exists()


def test_a_study_section_keeps_the_study_defaults_it_does_not_name(tmp_path):
    from dermsynth.study.config import load_study

    study = tmp_path / "study.yaml"
    study.write_text("phantom: {seed: 3}\ngan: {set: [train.epochs=2]}\n")
    cfg = load_study(study)[0]
    assert (cfg.phantom.per_class, cfg.phantom.size, cfg.phantom.seed) == (60, 64, 3)
    assert (cfg.gan.preset, cfg.gan.set) == ("best.yaml", ("train.epochs=2",))


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
