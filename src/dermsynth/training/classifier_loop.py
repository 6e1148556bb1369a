"""The judge classifier's training loop: train on the split's train part, pick the best epoch on val.

Run it with ``dermsynth train-classifier --config configs/classifier-resnet.yaml
--data DIR --out RUN``. It reads the uint8 cache, trains on the train part of
the lesion-grouped split only, scores val after every epoch and keeps the epoch
with the best val balanced accuracy. The run folder mirrors a GAN run's:

    config.yaml        the resolved config
    run.json           seed, versions, hardware, data fingerprint, split hash, image counts, timings
    split.json         the split it trained on (reuse one with --split FILE)
    stats.jsonl        one line per epoch: train loss, val balanced accuracy, val accuracy, lr, images/s
    checkpoints/       the last K full training states (resume with --resume auto)
    classifier.pt      the best epoch's inference snapshot, with the train part's image and
                       lesion ids that ``dermsynth evaluate-classifier`` checks for leakage

Resume is exact: the data order of epoch e comes from a generator seeded by
(seed, e), the learning rate is a function of the epoch, and the states hold
the global RNG that drives dropout and augmentation.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from tqdm import tqdm

from dermsynth._version import __version__
from dermsynth.augment import color_jitter, dihedral, random_resized_crop
from dermsynth.checkpoint import (
    CLASSIFIER_FORMAT,
    CLASSIFIER_STATE_FORMAT,
    CheckpointError,
    find_resume,
    load_checkpoint,
    rng_state,
    save_atomic,
    save_state,
    set_rng_state,
    state_path,
)
from dermsynth.config import ClassifierRunConfig, to_plain
from dermsynth.data.index import CLASSES
from dermsynth.errors import DataError, DivergenceError
from dermsynth.figures import from_uint8
from dermsynth.models.classifier import Classifier, predict_proba
from dermsynth.training.runs import (RunOptions, StatsLog, autocast, device_images, finish_record, open_run_folder,
                                     prepare_data, progress_bar, resume_trainer, start_record, truncate_stats)

CLASSIFIER_FILE = "classifier.pt"
"""A classifier run's snapshot (a judge, or a utility arm's classifier)."""


def epoch_order(labels: torch.Tensor, imbalance: str, seed: int, epoch: int,
                synthetic: torch.Tensor | None = None, synthetic_share: float | None = None) -> torch.Tensor:
    """Indices of the train images for ``epoch`` (1-based): class-balanced draws or a permutation.

    With ``oversample`` every class is drawn equally often, with replacement,
    ``len(labels)`` draws per epoch; otherwise each image once, shuffled. With
    ``synthetic_share`` (and the boolean mask ``synthetic``), draws are class-balanced
    whatever ``imbalance`` says, and within each class that share of the draws is of
    synthetic images (all of them, where a class has no real image), the rest real.
    The order depends only on (seed, epoch), so a resumed run sees the same batches.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    labels = labels.cpu()
    if synthetic_share is not None:
        synthetic = synthetic.cpu()
        weights = torch.zeros(len(labels), dtype=torch.float64)
        for c in labels.unique():
            in_class = labels == c
            kinds = [(synthetic & in_class, synthetic_share), (~synthetic & in_class, 1 - synthetic_share)]
            kinds = [(mask, share) for mask, share in kinds if mask.any() and share > 0] or \
                [(mask, 1.0) for mask, _ in kinds if mask.any()]
            total = sum(share for _, share in kinds)
            for mask, share in kinds:
                weights[mask] = share / total / mask.sum()
        return torch.multinomial(weights, len(labels), replacement=True, generator=gen)
    if imbalance == "oversample":
        counts = torch.bincount(labels, minlength=len(CLASSES)).double()
        weights = 1.0 / counts[labels]
        return torch.multinomial(weights, len(labels), replacement=True, generator=gen)
    return torch.randperm(len(labels), generator=gen)


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Cross-entropy weights inverse to class frequency: n / (classes present * n_c), 0 for absent classes.

    Every class present then carries the same total weight, and the weights of all n images sum to n.
    """
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def lr_at(cfg: ClassifierRunConfig, epoch: int, step: int = 0, steps: int = 1) -> float:
    """Learning rate of step ``step`` (0-based) of ``steps`` in ``epoch`` (1-based).

    Linear warm-up over the first ``train.warmup_epochs`` epochs (reaching ``lr``
    at their last step), then constant or a cosine decay over the remaining
    epochs, one value per epoch. A function of (epoch, step) only: resume is exact.
    """
    t = cfg.train
    warmup = t.warmup_epochs
    if epoch <= warmup:
        return t.lr * ((epoch - 1) * steps + step + 1) / (warmup * steps)
    if t.lr_schedule == "cosine":
        return t.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1 - warmup) / (t.epochs - warmup)))
    return t.lr


def _optimizer(cfg: ClassifierRunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=0.9, nesterov=True, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


class ClassifierTrainer:
    """State and phases of one classifier run; :func:`train_classifier` drives it."""

    def __init__(self, cfg: ClassifierRunConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.autocast = autocast(cfg.train.amp, device)
        torch.manual_seed(cfg.train.seed)
        self.model = Classifier(cfg.model).to(device)
        self.opt = _optimizer(cfg, self.model)
        self.epoch = 0  # epochs completed
        self.images_seen = 0
        self.elapsed_s = 0.0
        self.best_score = -1.0
        self.best_epoch = 0
        self.weight_sum: dict[str, torch.Tensor] | None = None  # select average: the window's weights, summed
        self.averaged = 0  # epochs in weight_sum

    def load_data(self, train_images: np.ndarray, train_labels: np.ndarray,
                  val_images: np.ndarray, val_labels: np.ndarray, synthetic: np.ndarray | None = None,
                  synthetic_share: float | None = None) -> None:
        """Train images as a uint8 (N, 3, R, R) tensor on the device; val images stay uint8 NHWC.

        ``synthetic`` marks the train images that are synthetic; with ``synthetic_share``
        the batches are class-balanced with that share of synthetic images (:func:`epoch_order`).
        """
        self.images, self.labels = device_images(train_images, train_labels, self.cfg.train.batch_size, self.device)
        self.val_images, self.val_labels = np.asarray(val_images), np.asarray(val_labels, dtype=np.int64)
        self.steps_per_epoch = len(self.images) // self.cfg.train.batch_size
        mask = np.zeros(len(train_labels), bool) if synthetic is None else np.asarray(synthetic, bool)
        self.synthetic = torch.from_numpy(mask)
        self.synthetic_share = synthetic_share
        weights = class_weights(np.asarray(train_labels), self.cfg.model.num_classes)
        # Class-balanced draws (synthetic_share) already balance the classes: no loss weights on top.
        weighted = self.cfg.train.imbalance == "weighted_loss" and synthetic_share is None
        self.loss_weights = weights.to(self.device) if weighted else None

    def train_epoch(self, on_step=None) -> dict[str, float]:
        """One pass over the train part; returns the epoch's mean loss and accuracy on augmented batches."""
        t = self.cfg.train
        epoch = self.epoch + 1
        order = epoch_order(self.labels, t.imbalance, t.seed, epoch, self.synthetic,
                            self.synthetic_share).to(self.device)
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        start = time.perf_counter()
        for step in range(self.steps_per_epoch):
            lr = lr_at(self.cfg, epoch, step, self.steps_per_epoch)
            for group in self.opt.param_groups:
                group["lr"] = lr
            idx = order[step * t.batch_size: (step + 1) * t.batch_size]
            x = from_uint8(self.images[idx])
            x = random_resized_crop(x, t.random_resized_crop)
            if t.dihedral:
                x = dihedral(x)
            x = color_jitter(x, t.color_jitter)
            y = self.labels[idx]
            with self.autocast():
                logits = self.model(x).float()
            loss = F.cross_entropy(logits, y, weight=self.loss_weights, label_smoothing=t.label_smoothing)
            if not torch.isfinite(loss).item():
                raise DivergenceError(f"the classifier's loss became {loss.item()} in epoch {epoch}, step {step + 1}; "
                                "lower train.lr")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == y).sum()
            if on_step is not None:
                on_step(len(idx))
        seconds = time.perf_counter() - start
        n = self.steps_per_epoch * t.batch_size
        self.epoch = epoch
        self.images_seen += n
        return {
            "train_loss": float(loss_sum) / self.steps_per_epoch,
            "train_accuracy": float(correct) / n,
            "lr": lr,  # of the epoch's last step
            "images_per_s": n / max(seconds, 1e-9),
        }

    def average_window(self) -> int:
        """select average: the first epoch (1-based) whose weights are averaged."""
        t = self.cfg.train
        return max(1, t.epochs - t.average_epochs + 1)

    def accumulate(self) -> None:
        """Add this epoch's weights to the average (float64 sums; integer buffers keep their last value)."""
        state = self.model.state_dict()
        if self.weight_sum is None:
            self.weight_sum = {k: v.detach().double().clone() if v.is_floating_point() else v.clone()
                               for k, v in state.items()}
        else:
            for k, v in state.items():
                if v.is_floating_point():
                    self.weight_sum[k] += v.detach().double()
                else:
                    self.weight_sum[k] = v.clone()
        self.averaged += 1

    def averaged_state(self) -> dict[str, torch.Tensor]:
        """The mean of the accumulated weights, in the model's own dtypes (BatchNorm statistics averaged too)."""
        state = self.model.state_dict()
        return {k: (v / self.averaged).to(state[k].dtype) if v.is_floating_point() else v
                for k, v in self.weight_sum.items()}

    def validate(self, state: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Val scores of the model as it is, or of ``state`` (the model's weights are restored after)."""
        if state is not None:
            current = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(state)
            try:
                return self.validate()
            finally:
                self.model.load_state_dict(current)
        pred = predict_proba(self.model, self.val_images).argmax(1)
        return {
            "val_balanced_accuracy": float(balanced_accuracy_score(self.val_labels, pred)),
            "val_accuracy": float(accuracy_score(self.val_labels, pred)),
        }

    def state_dict(self) -> dict:
        return {
            "format": CLASSIFIER_STATE_FORMAT,
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "epoch": self.epoch,
            "images_seen": self.images_seen,
            "elapsed_s": self.elapsed_s,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "weight_sum": self.weight_sum,
            "averaged": self.averaged,
            "rng": rng_state(self.device),
            "config": to_plain(self.cfg),
            "dermsynth_version": __version__,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.epoch, self.images_seen = int(state["epoch"]), int(state["images_seen"])
        self.elapsed_s = float(state["elapsed_s"])
        self.best_score, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        self.weight_sum, self.averaged = state.get("weight_sum"), int(state.get("averaged", 0))
        set_rng_state(state["rng"], self.device)


def train_classifier(
    cfg: ClassifierRunConfig,
    opts: RunOptions,
    synthetic: tuple[np.ndarray, np.ndarray] | None = None,
    use_real: bool = True,
    synthetic_share: float | None = None,
    init_from: str | Path | None = None,
) -> Path:
    """Train a judge classifier as ``cfg`` says into ``opts.out``; returns the run folder.

    ``synthetic`` (uint8 (N, R, R, 3) images at the config's resolution, and labels)
    is added to the real train part, or replaces it with ``use_real=False``
    (train on synthetic, test on real). ``synthetic_share`` draws class-balanced
    batches with that share of synthetic images in each class. ``init_from`` (a
    ``classifier.pt`` of the same model config) gives the starting weights, for
    fine-tuning a pre-trained classifier. Validation is always on real images.
    """
    with open_run_folder(opts, "classifier-run"):  # locked while this run writes it
        resume_path = find_resume(opts.out, opts.resume) if opts.resume else None
        return _train(cfg, opts, synthetic, use_real, resume_path, synthetic_share, init_from)


def _train(cfg: ClassifierRunConfig, opts: RunOptions, synthetic, use_real: bool, resume_path: Path | None,
           synthetic_share: float | None = None, init_from: str | Path | None = None) -> Path:
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    out = opts.out

    # Data: the index, the split (reused or drawn once), the cache; train and val parts only.
    index, split, cached = prepare_data(cfg, opts, parts=("train", "val"))
    train_rows, val_rows = cached.part_rows(split.parts, "train"), cached.part_rows(split.parts, "val")
    if len(val_rows) == 0:
        raise DataError("the split's val part is empty; the best epoch is chosen on val")
    train_ids = [cached.image_ids[i] for i in train_rows]
    train_lesions = sorted({cached.lesion_ids[i] for i in train_rows})

    real_rows = train_rows if use_real else train_rows[:0]
    train_images, train_labels = np.asarray(cached.images[real_rows]), np.asarray(cached.labels[real_rows], np.int64)
    synthetic_counts = Counter()
    n_real = len(train_labels)
    if synthetic is not None:
        syn_images, syn_labels = np.asarray(synthetic[0]), np.asarray(synthetic[1], dtype=np.int64)
        if syn_images.shape[1:] != cached.images.shape[1:] or syn_images.dtype != np.uint8:
            raise DataError(f"synthetic images have shape {syn_images.shape} ({syn_images.dtype}); "
                            f"expected uint8 (N, {cfg.data.resolution}, {cfg.data.resolution}, 3)")
        train_images = np.concatenate([train_images, syn_images])
        train_labels = np.concatenate([train_labels, syn_labels])
        synthetic_counts = Counter(CLASSES[i] for i in syn_labels)
    if not use_real and not synthetic_counts:
        raise DataError("use_real=False needs synthetic images to train on")
    if synthetic_share is not None and not 0 <= synthetic_share <= 1:
        raise DataError(f"synthetic_share {synthetic_share} is not in [0, 1]")
    trainer = ClassifierTrainer(cfg, device)
    if init_from is not None and resume_path is None:
        initial = load_checkpoint(init_from, expect=CLASSIFIER_FORMAT)
        shape = lambda plain: {k: v for k, v in plain.items() if k != "backbone_weights"}  # noqa: E731
        if shape(initial["model_config"]) != shape(to_plain(cfg.model)):
            raise CheckpointError(f"{init_from}: its model config differs from this run's; it cannot start it")
        trainer.model.load_state_dict(initial["model"])
    is_synthetic = np.arange(len(train_labels)) >= n_real
    trainer.load_data(train_images, train_labels, cached.images[val_rows], cached.labels[val_rows],
                      is_synthetic, synthetic_share)
    if resume_path is not None:
        resume_trainer(trainer, resume_path, CLASSIFIER_STATE_FORMAT, "model or optimiser", out)
        print(f"resumed from {resume_path} after epoch {trainer.epoch}")
        # Lines written after that state (by the run that stopped) are written again below.
        truncate_stats(out / "stats.jsonl", "epoch", trainer.epoch)

    train_counts = Counter(CLASSES[i] for i in cached.labels[train_rows])
    run_info = start_record(
        cfg, device, index, split, out, resume_path, {"epoch": trainer.epoch}, kind="classifier",
        train_images=len(train_rows) if use_real else 0, train_lesions=len(train_lesions), val_images=len(val_rows),
        train_images_per_class={c: train_counts.get(c, 0) if use_real else 0 for c in CLASSES},
        synthetic_train_images_per_class={c: synthetic_counts.get(c, 0) for c in CLASSES},
        synthetic_share_per_class=synthetic_share, initialised_from=None if init_from is None else str(init_from))

    def snapshot(weights: dict | None = None, selection: str | None = None) -> dict:
        return {
            "format": CLASSIFIER_FORMAT,
            "model": weights if weights is not None else trainer.model.state_dict(),
            "selection": selection or f"best val epoch ({trainer.epoch})",
            "model_config": to_plain(cfg.model),
            "classes": list(CLASSES),
            "resolution": cfg.data.resolution,
            "crop": cfg.data.crop,
            "input_range": "[-1, 1] from uint8 (x / 127.5 - 1)",
            "split_parts": split.parts,
            "split_seed": split.seed,
            "split_sha256": split.sha256(),
            "train_image_ids": train_ids,
            "train_lesion_ids": train_lesions,
            "data_fingerprint": run_info["data_fingerprint"],
            "best_epoch": trainer.epoch,
            "val_balanced_accuracy": trainer.best_score,
            "preset": cfg.name,
            "dermsynth_version": __version__,
        }

    t = cfg.train
    bar = progress_bar(t.epochs * trainer.steps_per_epoch * t.batch_size, trainer.images_seen,
                       f"train-classifier {cfg.name}", opts.progress)
    start = time.perf_counter() - trainer.elapsed_s
    stopped_early = False
    stats_file = StatsLog(out / "stats.jsonl")
    try:
        while trainer.epoch < t.epochs:
            if t.patience and trainer.epoch - trainer.best_epoch >= t.patience:
                stopped_early = True
                break
            line = trainer.train_epoch(on_step=bar.update)
            line.update(trainer.validate())
            if t.select == "best":
                is_best = line["val_balanced_accuracy"] > trainer.best_score
                if is_best:
                    trainer.best_score, trainer.best_epoch = line["val_balanced_accuracy"], trainer.epoch
                    save_atomic(snapshot(), out / CLASSIFIER_FILE)
            else:  # the mean of the last epochs' weights; before the window, the latest weights stand in
                is_best = False
                first = trainer.average_window()
                if trainer.epoch >= first:
                    trainer.accumulate()
                    weights = trainer.averaged_state()
                    scores = trainer.validate(weights)
                    line["val_balanced_accuracy_averaged"] = scores["val_balanced_accuracy"]
                    selection = f"mean of the weights of epochs {first}-{trainer.epoch}"
                else:
                    weights, scores, selection = None, line, f"the weights of epoch {trainer.epoch} (not averaged yet)"
                trainer.best_score, trainer.best_epoch = scores["val_balanced_accuracy"], trainer.epoch
                save_atomic(snapshot(weights, selection), out / CLASSIFIER_FILE)
            trainer.elapsed_s = time.perf_counter() - start
            line = {"epoch": trainer.epoch, **{k: v if k == "lr" else round(v, 6) for k, v in line.items()},
                    "best_epoch": trainer.best_epoch, "elapsed_s": round(trainer.elapsed_s, 2)}
            stats_file.write(line)
            tqdm.write(
                f"epoch {trainer.epoch:4d}  loss {line['train_loss']:.4f}  "
                f"val bal.acc {line['val_balanced_accuracy']:.4f}  val acc {line['val_accuracy']:.4f}  "
                f"lr {line['lr']:.2e}  {line['images_per_s']:.0f} img/s" + ("  *best" if is_best else ""),
                file=sys.stdout,
            )
            if trainer.epoch % t.checkpoint_epochs == 0 or trainer.epoch == t.epochs:
                save_state(trainer.state_dict(), out / "checkpoints", trainer.epoch, t.keep_checkpoints)
        if not state_path(out / "checkpoints", trainer.epoch).is_file():
            save_state(trainer.state_dict(), out / "checkpoints", trainer.epoch, t.keep_checkpoints)
    finally:
        bar.close()
        stats_file.close()
    finish_record(out, run_info, epochs=trainer.epoch, best_epoch=trainer.best_epoch,
                  best_val_balanced_accuracy=round(trainer.best_score, 6), stopped_early=stopped_early,
                  elapsed_s=round(trainer.elapsed_s, 2), selection=t.select)
    held = (f"best epoch {trainer.best_epoch}" if t.select == "best" else
            f"mean of the last {trainer.averaged} epochs' weights")
    print(f"done: {trainer.epoch} epochs; {held} (val balanced accuracy {trainer.best_score:.4f}); "
          f"snapshot {out / 'classifier.pt'}")
    return out
