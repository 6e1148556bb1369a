"""Every path of a study folder, named once: the pipeline writes them, the report reads them.

    study/
      .dermsynth-folder.json  provenance.json  data-summary.json  split.json  report.html
      phantom-data/           the built-in phantom data, drawn when no --data is given
      stages/<stage>.json     each finished stage's key; <stage>.started while a training stage runs
      gan/                    the GAN run (generator.pt, run.json, loss_curves.png, checkpoints/)
      judge/                  the judge classifier's run (classifier.pt): Table III
      feature-judge/          the classifier whose features are the judge space, when not the judge's own
      synthetic/              the export (images, metadata, grid.png)
      eval/                   evaluation.json (generative metrics), table3/, probe/, utility/

The file names inside each run or result folder are the ones their writers declare (``GENERATOR_FILE``,
``TABLE3_JSON``, ...), read here rather than typed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dermsynth.data.splits import SPLIT_FILE
from dermsynth.evaluation.detection import TABLE3_JSON
from dermsynth.evaluation.gan import EVALUATION_JSON
from dermsynth.evaluation.probe import PROBE_JSON
from dermsynth.evaluation.utility import UTILITY_JSON, UTILITY_PNG
from dermsynth.generate import GRID_FILE
from dermsynth.training.classifier_loop import CLASSIFIER_FILE
from dermsynth.training.gan_loop import GENERATOR_FILE
from dermsynth.training.runs import LOSS_CURVES, RUN_JSON


@dataclass(frozen=True)
class StudyLayout:
    """The paths of the study folder ``root``."""

    root: Path

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def data_summary(self) -> Path:
        return self.root / "data-summary.json"

    @property
    def split(self) -> Path:
        return self.root / SPLIT_FILE

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def phantom_data(self) -> Path:
        return self.root / "phantom-data"

    @property
    def stages(self) -> Path:
        return self.root / "stages"

    def stage_record(self, stage: str) -> Path:
        """A finished stage's key, time and date."""
        return self.stages / f"{stage}.json"

    def stage_started(self, stage: str) -> Path:
        """The key a training stage was started with (its run folder is continued only under the same key)."""
        return self.stages / f"{stage}.started"

    @property
    def gan(self) -> Path:
        return self.root / "gan"

    @property
    def generator(self) -> Path:
        return self.gan / GENERATOR_FILE

    @property
    def gan_record(self) -> Path:
        return self.gan / RUN_JSON

    @property
    def loss_curves(self) -> Path:
        return self.gan / LOSS_CURVES

    @property
    def judge(self) -> Path:
        return self.root / "judge"

    @property
    def judge_classifier(self) -> Path:
        return self.judge / CLASSIFIER_FILE

    @property
    def feature_judge(self) -> Path:
        return self.root / "feature-judge"

    @property
    def feature_judge_classifier(self) -> Path:
        return self.feature_judge / CLASSIFIER_FILE

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic"

    @property
    def grid(self) -> Path:
        return self.synthetic / GRID_FILE

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def evaluation(self) -> Path:
        return self.eval / EVALUATION_JSON

    @property
    def table3(self) -> Path:
        return self.eval / "table3"

    @property
    def table3_json(self) -> Path:
        return self.table3 / TABLE3_JSON

    @property
    def probe(self) -> Path:
        return self.eval / "probe"

    @property
    def probe_json(self) -> Path:
        return self.probe / PROBE_JSON

    @property
    def utility(self) -> Path:
        return self.eval / "utility"

    @property
    def utility_json(self) -> Path:
        return self.utility / UTILITY_JSON

    @property
    def utility_figure(self) -> Path:
        return self.utility / UTILITY_PNG
