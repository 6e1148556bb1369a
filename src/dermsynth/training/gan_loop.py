"""The GAN training loop: one loop, a D phase and a G phase per step.

Run it with ``dermsynth train-gan --config configs/best.yaml --data DIR --out RUN``
(or under ``torchrun --nproc_per_node N`` for several GPUs). It trains on the
train part of the saved lesion-grouped split only, feeds from the uint8 cache,
and writes into the run folder:

    config.yaml        the resolved config
    run.json           seed, versions, hardware, data and split hashes, timings
    split.json         the split it trained on
    stats.jsonl        one line per tick: losses, D outputs, gradient norms, images/s
    samples/           fixed-noise grids, one row per class, at each snapshot
    loss_curves.png    the losses over training (the paper's Fig. 5)
    checkpoints/       the last K full training states (resume with --resume auto)
    generator.pt       the newest inference snapshot (EMA generator, its config, the train image and lesion ids)
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DistributedSampler

from dermsynth import distributed as dist
from dermsynth._version import __version__
from dermsynth.augment import diff_augment, dihedral
from dermsynth.checkpoint import (
    SNAPSHOT_FORMAT,
    STATE_FORMAT,
    find_resume,
    list_states,
    rng_state,
    save_atomic,
    save_state,
    seeded,
    set_rng_state,
)
from dermsynth.config import CLASS_SAMPLING, GanConfig, to_plain
from dermsynth.data.index import CLASSES
from dermsynth.errors import ConfigError, DataError, DivergenceError
from dermsynth.figures import class_grid, from_uint8, plot_gan_stats, save_synthetic_image, to_uint8
from dermsynth.model_card import HAM10000_TERMS, OTHER_TERMS, write_model_card
from dermsynth.models.discriminator import build_discriminator
from dermsynth.models.generator import build_generator
from dermsynth.training import gan_losses
from dermsynth.training.runs import (
    LOSS_CURVES,
    RunOptions,
    StatsLog,
    autocast,
    device_images,
    finish_record,
    hardware,
    open_run_folder,
    prepare_data,
    progress_bar,
    resume_trainer,
    start_record,
    truncate_stats,
)

GENERATOR_FILE = "generator.pt"
"""A GAN run's generator snapshot (what `generate` and `evaluate gan` take)."""


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return torch.stack(norms).norm() if norms else torch.zeros(())


class Trainer:
    """State and phases of one GAN run; :func:`train_gan` drives it."""

    def __init__(self, cfg: GanConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        t = cfg.train
        self.world = dist.world_size()
        if t.batch_size % self.world:
            raise ConfigError(f"train.batch_size {t.batch_size} is not divisible by the {self.world} processes")
        self.batch_per_gpu = t.batch_size // self.world
        self.autocast = autocast(t.amp, device)
        self.memory_format = torch.channels_last if t.channels_last else torch.contiguous_format

        torch.manual_seed(t.seed)  # identical initial weights on every rank
        self.G = build_generator(cfg.generator).to(device, memory_format=self.memory_format)
        self.D = build_discriminator(cfg.discriminator).to(device, memory_format=self.memory_format)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # A hybrid D has two heads (pixel, feature), each with its own adversarial term and weight.
        self.head_names = getattr(self.D, "head_names", ("D",))
        self.head_weights = (cfg.loss.pixel_weight, cfg.loss.feature_weight) if len(self.head_names) > 1 else (1.0,)
        betas = tuple(cfg.optim.betas)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.optim.g_lr, betas=betas)
        # Only D's trained weights: a projected D's pretrained network and random projections stay frozen.
        self.opt_D = torch.optim.Adam([p for p in self.D.parameters() if p.requires_grad], lr=cfg.optim.d_lr,
                                      betas=betas)
        if dist.is_initialized():
            ids = [device.index] if device.type == "cuda" else None
            self.G_ddp = DDP(self.G, device_ids=ids, broadcast_buffers=False)
            self.D_ddp = DDP(self.D, device_ids=ids, broadcast_buffers=False)
        else:
            self.G_ddp, self.D_ddp = self.G, self.D
        torch.manual_seed(t.seed + dist.rank())  # per-rank noise and augmentation

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.images_seen = 0
        self.elapsed_s = 0.0
        self.zero_grad_steps = 0  # steps in a row with G's gradient exactly 0 (divergence guard)

    # --- data -------------------------------------------------------------------

    def load_data(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Train images as a uint8 (N, 3, R, R) tensor on the device, with labels."""
        self.images, self.labels = device_images(images, labels, self.cfg.train.batch_size, self.device)
        self.sampler = DistributedSampler(
            range(len(self.images)), num_replicas=self.world, rank=dist.rank(),
            shuffle=True, seed=self.cfg.train.seed, drop_last=True,
        )
        self.steps_per_epoch = len(self.sampler) // self.batch_per_gpu  # >= 1: device_images refuses fewer
        self._order: list[int] | None = None

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
            self._order = None
        if self._order is None:
            self.sampler.set_epoch(self.epoch)
            self._order = list(self.sampler) if self.cfg.train.class_sampling == "uniform" else self._drawn_order()
        start = self.batch_in_epoch * self.batch_per_gpu
        idx = torch.tensor(self._order[start: start + self.batch_per_gpu], device=self.device)
        self.batch_in_epoch += 1
        real = from_uint8(self.images[idx]).contiguous(memory_format=self.memory_format)
        if self.cfg.train.dihedral:
            real = dihedral(real)
        return real, self.labels[idx]

    def _drawn_order(self) -> list[int]:
        """One epoch's image indices drawn with replacement, class c weighted by its size ** (1 - power);
        seeded by (seed, epoch, rank) so a resumed run draws the same."""
        power = CLASS_SAMPLING[self.cfg.train.class_sampling]
        labels = self.labels.cpu()
        weights = torch.bincount(labels).double()[labels] ** -power
        gen = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + self.epoch * 1_009 + dist.rank())
        return torch.multinomial(weights, len(self.sampler), replacement=True, generator=gen).tolist()

    def total_steps(self) -> int:
        t = self.cfg.train
        total_images = t.total_kimg * 1000 if t.total_kimg is not None else t.epochs * len(self.images)
        return max(1, math.ceil(total_images / t.batch_size))

    # --- one step: D phase, then G phase ------------------------------------------

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        policy = cfg.train.diffaugment
        real, labels = self.next_batch()
        z_dim = cfg.generator.z_dim
        stats: dict[str, torch.Tensor] = {}

        # D phase: real images up, generated images down, plus regularisers.
        self.D.requires_grad_(True)
        with torch.no_grad(), self.autocast():
            fake = self.G(torch.randn(len(real), z_dim, device=self.device), labels).float()
        do_r1 = cfg.loss.r1_gamma > 0 and self.step % cfg.loss.r1_interval == 0
        real_in = real.detach().requires_grad_(do_r1)
        with self.autocast():
            real_logits = self.D_ddp(diff_augment(real_in, policy), labels)
            fake_logits = self.D_ddp(diff_augment(fake, policy), labels)
        loss_D = self._weighted(gan_losses.d_losses(cfg.loss.kind, real_logits, fake_logits), "loss_D", stats)
        total_D = loss_D
        if cfg.loss.gp_weight > 0 and self.step % cfg.loss.gp_interval == 0:  # lazy: weighted by the interval
            gp = gan_losses.gradient_penalty(lambda x, y: self.D_ddp(diff_augment(x, policy), y), real, fake, labels)
            total_D = total_D + cfg.loss.gp_weight * cfg.loss.gp_interval * gp
            stats["gp"] = gp.detach()
        if do_r1:
            r1 = gan_losses.r1_penalty(real_logits, real_in)
            total_D = total_D + (cfg.loss.r1_gamma / 2) * r1 * cfg.loss.r1_interval
            stats["r1"] = r1.detach()
        self.opt_D.zero_grad(set_to_none=True)
        total_D.backward()
        stats["grad_norm_D"] = _grad_norm(self.D)
        self._check("discriminator", total_D, stats["grad_norm_D"])
        self.opt_D.step()

        # G phase: fool D (its weights frozen; its DDP wrapper skipped, D's grads are not used).
        self.D.requires_grad_(False)
        gen_labels = labels[torch.randperm(len(labels), device=self.device)]
        if cfg.loss.mode_seeking > 0:  # pairs (i, i + N/2) of one class from two noises
            half = len(gen_labels) // 2
            gen_labels = torch.cat([gen_labels[:half], gen_labels[:half], gen_labels[2 * half:]])
        z = torch.randn(len(real), z_dim, device=self.device)
        with self.autocast():
            fake = self.G_ddp(z, gen_labels)
            gen_logits = self.D(diff_augment(fake.float(), policy), gen_labels)
        loss_G = self._weighted(gan_losses.g_losses(cfg.loss.kind, gen_logits), "loss_G", stats)
        if cfg.loss.mode_seeking > 0:
            ms = gan_losses.mode_seeking(fake.float(), z)
            loss_G = loss_G + cfg.loss.mode_seeking * ms
            stats["mode_seeking"] = ms.detach()
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        stats["grad_norm_G"] = _grad_norm(self.G)
        self._check("generator", loss_G, stats["grad_norm_G"])
        self.opt_G.step()
        self._update_ema()

        self.step += 1
        self.images_seen += cfg.train.batch_size
        stats.update(loss_D=loss_D.detach(), loss_G=loss_G.detach())
        for side, logits in (("real", real_logits), ("fake", fake_logits)):
            per_head = [x.detach() for x in gan_losses.heads(logits)]
            stats[f"D_{side}"] = torch.stack([x.mean() for x in per_head]).mean()
            stats[f"D_{side}_prob"] = torch.stack([torch.sigmoid(x).mean() for x in per_head]).mean()
            if len(per_head) > 1:
                stats.update({f"D_{side}_{name}": x.mean() for name, x in zip(self.head_names, per_head)})
        return stats

    def _weighted(self, parts: list[torch.Tensor], name: str, stats: dict[str, torch.Tensor]) -> torch.Tensor:
        """The heads' loss terms weighed into one (a single head: its term as it is); each head's term is
        logged beside the sum when there are several."""
        if len(parts) == 1:
            return parts[0]
        stats.update({f"{name}_{head}": part.detach() for head, part in zip(self.head_names, parts)})
        return sum(w * part for w, part in zip(self.head_weights, parts, strict=True))

    def _check(self, network: str, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Before an optimiser step: stop when the loss or gradient norm is NaN, infinite or beyond its bound,
        or (generator) when its gradient has been exactly 0 for train.divergence_zero_grad_steps steps in a row.
        One host sync per phase; every process stops together (one that sees nothing wrong says so)."""
        t = self.cfg.train
        v_loss, v_grad = (float(x) for x in torch.stack([loss.detach().float(), grad_norm.float()]).cpu())
        problem = None
        for what, v, bound, name in (("loss", v_loss, t.divergence_max_loss, "divergence_max_loss"),
                                     ("gradient norm", v_grad, t.divergence_max_grad_norm, "divergence_max_grad_norm")):
            if problem is None and (not math.isfinite(v) or abs(v) > bound):
                problem = f"the {network} {what} became {v:.4g}" + (
                    f", beyond the bound {bound:g} (train.{name})" if math.isfinite(v) else "")
        if network == "generator" and problem is None:
            self.zero_grad_steps = self.zero_grad_steps + 1 if v_grad == 0 else 0
            if t.divergence_zero_grad_steps and self.zero_grad_steps >= t.divergence_zero_grad_steps:
                problem = (f"the generator's gradient was exactly 0 for {self.zero_grad_steps} steps in a row (steps "
                           f"{self.step + 2 - self.zero_grad_steps}-{self.step + 1}): the discriminator saturates and "
                           "the generator has stopped learning (train.divergence_zero_grad_steps)")
        if dist.any_rank(problem is not None):
            where = f"at step {self.step + 1} ({self.images_seen / 1000:.1f} kimg)"
            raise DivergenceError(f"{problem or f'another process saw the {network} diverge'} {where}; "
                                  "weights were not updated with it")

    def ema_beta(self) -> float:
        """Weight of the old EMA per step: 0.5 per half-life of images, the half-life ramped up early on."""
        t = self.cfg.train
        halflife_images = t.ema_halflife_kimg * 1000
        if t.ema_rampup is not None:
            halflife_images = min(halflife_images, self.images_seen * t.ema_rampup)
        return 0.5 ** (t.batch_size / halflife_images) if halflife_images > 0 else 0.0

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = self.ema_beta()
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p.detach(), 1.0 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # --- checkpoints ------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "images_seen": self.images_seen,
            "elapsed_s": self.elapsed_s,
            "world_size": self.world,
            "rng": dist.all_gather_objects(rng_state(self.device)),  # one entry per rank
            "config": to_plain(self.cfg),
            "dermsynth_version": __version__,
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch, self.images_seen = int(state["batch_in_epoch"]), int(state["images_seen"])
        self.elapsed_s = float(state["elapsed_s"])
        self._order = None
        rngs = state["rng"]
        if len(rngs) == self.world:
            set_rng_state(rngs[dist.rank()], self.device)
        else:
            dist.print0(f"note: checkpoint made with {len(rngs)} process(es), resuming with {self.world}: "
                        "the data order continues, noise streams restart from the seed")
            torch.manual_seed(self.cfg.train.seed + dist.rank() + self.step)

    def snapshot(self) -> dict:
        return {
            "format": SNAPSHOT_FORMAT,
            "G_ema": self.G_ema.state_dict(),
            "generator_config": to_plain(self.cfg.generator),
            "discriminator_arch": self.cfg.discriminator.arch,  # projected: trained against ImageNet features
            "classes": list(CLASSES),
            "step": self.step,
            "images_seen": self.images_seen,
            "preset": self.cfg.name,
            "dermsynth_version": __version__,
        }


def train_cache_rows(split, index, cached) -> np.ndarray:
    """Cache rows of the split's train part (images skipped as unreadable are left out, with a warning)."""
    missing = cached.missing(split.parts, "train")
    if missing:
        dist.print0(f"warning: {len(missing)} train image(s) are not in the cache (unreadable), e.g. {missing[:3]}")
    if len(missing) == len(split.parts["train"]):
        raise DataError(f"the split's train part has no readable images in {index.root}")
    return cached.part_rows(split.parts, "train")


def _fixed_noise(cfg: GanConfig) -> tuple[torch.Tensor, torch.Tensor]:
    cols = cfg.train.grid_columns
    gen = torch.Generator().manual_seed(cfg.train.seed + 12345)
    z = torch.randn(len(CLASSES) * cols, cfg.generator.z_dim, generator=gen)
    labels = torch.arange(len(CLASSES)).repeat_interleave(cols)
    return z, labels


def train_gan(cfg: GanConfig, opts: RunOptions) -> Path:
    """Train a conditional GAN as ``cfg`` says into ``opts.out``; returns the run folder.

    The run folder is locked while the run writes it (rank 0 holds the lock)."""
    device = dist.init()
    lock, problem, resume_path = None, None, None
    if dist.is_main():
        try:
            lock = open_run_folder(opts, "gan-run")
            resume_path = find_resume(opts.out, opts.resume) if opts.resume else None
        except Exception as e:
            if lock is not None:
                lock.release()
            problem = e
    failed, resume_path = dist.broadcast_object((problem is not None, resume_path))
    if problem is not None:
        raise problem
    if failed:
        raise DataError(f"the main process could not start the run in {opts.out}")
    try:
        return _train(cfg, opts, device, resume_path)
    except DivergenceError as e:
        states = list_states(opts.out / "checkpoints")
        left = (f"the last good checkpoint is {states[-1]} (continue with --resume auto, e.g. after lowering "
                "the learning rates)" if states else "no checkpoint had been saved yet")
        raise DivergenceError(f"{e}; {left}") from None
    finally:
        if lock is not None:
            lock.release()
        # Left to interpreter exit, gloo's process group could be torn down with its threads still joinable,
        # and the process ended in std::terminate (SIGABRT) after a run that had finished well.
        dist.shutdown()


def _train(cfg: GanConfig, opts: RunOptions, device: torch.device, resume_path: Path | None) -> Path:
    out = opts.out

    # Data: the index, the split (reused or drawn once), the cache; the train part only.
    index, split, cached = prepare_data(cfg, opts, main=dist.is_main(), barrier=dist.barrier, say=dist.print0)
    train_rows = train_cache_rows(split, index, cached)
    # What the generator saw: a utility study refuses one that saw its val or test images or lesions.
    trained_on = {"train_image_ids": [cached.image_ids[i] for i in train_rows],
                  "train_lesion_ids": sorted({cached.lesion_ids[i] for i in train_rows}),
                  "split_sha256": split.sha256()}
    card = _card_facts(cfg, index, split, cached.labels[train_rows], device)

    trainer = Trainer(cfg, device)
    trainer.load_data(cached.images[train_rows], cached.labels[train_rows])
    if resume_path is not None:
        resume_trainer(trainer, resume_path, STATE_FORMAT, "networks or optimisers", out)
        dist.print0(f"resumed from {resume_path} at step {trainer.step} ({trainer.images_seen / 1000:.1f} kimg)")
    total_steps = trainer.total_steps()

    # Written only now that the run has started (or resumed) for sure: a failed resume rewrites nothing.
    if dist.is_main():
        truncate_stats(out / "stats.jsonl", "step", trainer.step)  # lines past the state are written again
        run_info = start_record(cfg, device, index, split, out, resume_path, {"step": trainer.step},
                                train_images=len(train_rows), total_steps=total_steps)

    fixed_z, fixed_labels = _fixed_noise(cfg)
    steps_per_tick = max(1, round(cfg.train.tick_kimg * 1000 / cfg.train.batch_size))
    stats_file = StatsLog(out / "stats.jsonl", enabled=dist.is_main())
    writer = _tensorboard(out) if dist.is_main() else None
    bar = progress_bar(total_steps * cfg.train.batch_size, trainer.images_seen, f"train-gan {cfg.name}",
                       opts.progress and dist.is_main())

    def write_snapshot() -> None:
        state = trainer.state_dict()  # on every rank: it gathers each rank's RNG state
        dist.main_writes(lambda: save_snapshot(state))

    def save_snapshot(state: dict) -> None:
        save_state(state, out / "checkpoints", trainer.step, cfg.train.keep_checkpoints)
        save_atomic({**trainer.snapshot(), **trained_on}, out / GENERATOR_FILE)
        write_model_card(out / GENERATOR_FILE, {**card, "training": {
            **card["training"], "steps": trainer.step, "kimg": round(trainer.images_seen / 1000, 3),
            "minutes": round((time.perf_counter() - start) / 60, 1)}})
        with torch.no_grad(), seeded(cfg.train.seed + 12345):
            grid = to_uint8(trainer.G_ema(fixed_z.to(device), fixed_labels.to(device)))
        (out / "samples").mkdir(exist_ok=True)
        save_synthetic_image(class_grid(grid, len(CLASSES)), out / "samples" / f"fakes-{trainer.step:08d}.png",
                             atomic=True, step=trainer.step)
        plot_gan_stats(out / "stats.jsonl", out / LOSS_CURVES)

    start = time.perf_counter() - trainer.elapsed_s
    tick_sums: dict[str, torch.Tensor] = {}
    tick_counts: dict[str, int] = {}
    tick_steps, tick_start, ticks = 0, time.perf_counter(), 0
    stopped_early = False
    interrupt = _GracefulStop()
    try:
        while trainer.step < total_steps:
            # Training time over all sessions of the run: a resumed run does not get the limit again.
            over = cfg.train.max_minutes is not None and time.perf_counter() - start > cfg.train.max_minutes * 60
            if dist.any_rank(over or interrupt.requested):
                stopped_early = True
                dist.print0(f"stopping at step {trainer.step} ({'time limit' if over else 'interrupted'}); "
                            "saving a checkpoint to resume from")
                break
            stats = trainer.train_step()
            for k, v in stats.items():
                tick_sums[k] = tick_sums.get(k, 0) + v.float()
                tick_counts[k] = tick_counts.get(k, 0) + 1
            tick_steps += 1
            bar.update(cfg.train.batch_size)
            if trainer.step % steps_per_tick == 0 or trainer.step == total_steps:
                keys = sorted(tick_sums)
                means = dist.all_reduce_mean(torch.stack([tick_sums[k] / tick_counts[k] for k in keys]))
                now = time.perf_counter()
                trainer.elapsed_s = now - start
                line = {
                    "step": trainer.step,
                    "kimg": round(trainer.images_seen / 1000, 3),
                    "epoch": round(trainer.images_seen / len(trainer.images), 4),
                    **{k: round(float(v), 6) for k, v in zip(keys, means)},
                    "images_per_s": round(tick_steps * cfg.train.batch_size / (now - tick_start), 2),
                    "elapsed_s": round(trainer.elapsed_s, 2),
                    "diffaugment": cfg.train.diffaugment,
                    "dihedral": cfg.train.dihedral,
                }
                dist.main_writes(lambda: stats_file.write(line))
                if dist.is_main():
                    if writer is not None:
                        for k in keys:
                            writer.add_scalar(k, line[k], trainer.images_seen)
                    bar.set_postfix(loss_D=f"{line['loss_D']:.3f}", loss_G=f"{line['loss_G']:.3f}")
                tick_sums, tick_counts, tick_steps, tick_start = {}, {}, 0, time.perf_counter()
                ticks += 1
                if ticks % cfg.train.snapshot_ticks == 0 and trainer.step < total_steps:
                    write_snapshot()
        trainer.elapsed_s = time.perf_counter() - start
        write_snapshot()
    finally:
        interrupt.restore()
        bar.close()
        stats_file.close()
        if writer is not None:
            writer.close()

    # Every rank must hold the same weights; a mismatch means the DDP set-up is broken.
    with torch.no_grad():
        checksums = dist.all_gather_objects(float(sum(p.double().sum() for p in trainer.G.parameters())))
    agree = all(c == checksums[0] for c in checksums)
    if dist.is_main():
        finish_record(out, run_info, steps=trainer.step, kimg=trainer.images_seen / 1000,
                      elapsed_s=round(trainer.elapsed_s, 2), stopped_early=stopped_early, rank_weights_agree=agree,
                      rank_checksums=checksums)
        dist.print0(f"done: {trainer.step} steps, {trainer.images_seen / 1000:.1f} kimg in "
                    f"{trainer.elapsed_s / 60:.1f} min; generator snapshot {out / 'generator.pt'}")
    if not agree:
        raise RuntimeError(f"processes ended with different generator weights: {checksums}")
    return out


def _card_facts(cfg: GanConfig, index, split, train_labels: np.ndarray, device: torch.device) -> dict:
    """What the model card says of the weights, from the run's config and data (training length added later)."""
    counts = np.bincount(np.asarray(train_labels), minlength=len(CLASSES))
    info = hardware(device)
    where = info.get("gpu") or f"{info['device']}, {info['torch_threads']} thread(s)"  # one GPU per process
    return {
        "preset": cfg.name, "seed": cfg.train.seed, "dermsynth_version": __version__,
        "resolution": cfg.generator.resolution, "classes": list(CLASSES), "z_dim": cfg.generator.z_dim,
        "generator_arch": cfg.generator.arch, "discriminator_arch": cfg.discriminator.arch,
        "data": {"name": Path(str(index.root)).name, "source": index.source, "fingerprint": index.fingerprint(),
                 "split_sha256": split.sha256(), "train_images": int(counts.sum()),
                 "train_images_per_class": {c: int(n) for c, n in zip(CLASSES, counts)}},
        "training": {"hardware": f"{where}, {info['world_size']} process(es)",
                     "torch": torch.__version__},
        # HAM10000's own lesion ids (HAM_0000118 ...) or DermaMNIST (made from it) say the images are HAM10000's,
        # whatever the folder's name.
        "terms": HAM10000_TERMS if index.source == "dermamnist" or any(r.lesion_id.startswith("HAM_")
                                                                       for r in index.records) else OTHER_TERMS,
    }


class _GracefulStop:
    """The first Ctrl-C or SIGTERM asks the loop to stop after the current step and save; a second one kills."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))
