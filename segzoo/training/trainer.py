"""The Trainer: AMP, gradient accumulation and clipping, channels_last, torch.compile, EMA, encoder freezing,
schedules, validation with best checkpoint and early stopping, exact resume, DDP through torchrun."""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from segzoo.core.config import ModelMeta
from segzoo.core.device import native_bf16, pick_device
from segzoo.core.errors import (
    InvalidValueError,
    NotAFolderError,
    OutputExistsError,
    SegzooError,
)
from segzoo.core.extras import install_hint
from segzoo.core.io import RunLock, atomic_path, check_output, write_error
from segzoo.data.dataset import SegmentationDataset, build_pairs, make_loader
from segzoo.data.normalize import normalize
from segzoo.data.scan import scan_masks
from segzoo.data.transforms import to_dict as transform_to_dict
from segzoo.training.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from segzoo.training.distill import Teacher, build_distill_loss
from segzoo.training.distributed import DistContext, setup_distributed, shard
from segzoo.training.evaluate import evaluate
from segzoo.training.finetune import INHERITED, inherit
from segzoo.training.losses import build_loss
from segzoo.training.metrics import Monitor
from segzoo.training.recipe import Recipe
from segzoo.training.schedule import build_optimizer, build_scheduler

if TYPE_CHECKING:
    from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["Trainer", "Callback", "NonFiniteLossError", "TrainingInterrupted", "pick_device"]

AUX_LOSS_WEIGHT = 0.4  # the auxiliary head's share of the loss, as in torchvision's reference scripts


def _pruning_lineage(meta: ModelMeta) -> dict[str, Any] | None:
    """A fine-tune of a pruned model keeps its pruning record, with the unpruned model it was pruned from (the
    fine-tune's own ``parent`` is the pruned file)."""
    if not meta.pruning:
        return None
    return {**meta.pruning, "parent": meta.pruning.get("parent", meta.parent)}


class NonFiniteLossError(SegzooError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class TrainingInterrupted(RuntimeError):
    """SIGINT / SIGTERM arrived; a checkpoint of the current step was saved."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; checkpoint saved to {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


class Callback:
    """Hooks into :meth:`Trainer.fit` (and :meth:`Trainer.run_steps`); override the ones you need. A callback
    may end a run after the current epoch with ``trainer.stop("reason")``."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first (remaining) epoch."""

    def on_step_end(self, trainer: Trainer, loss: float) -> None:
        """After each optimiser step; ``loss`` is the step's mean loss."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After each epoch and its validation, before the checkpoint; ``record`` is the epoch's history row."""

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, Any], improved: bool) -> None:
        """After each validation; ``improved``: the monitored figure is the best so far (``best/`` was written)."""

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """After the run, with the summary ``fit`` returns."""


class _TrainingForward(nn.Module):
    """What DDP and torch.compile wrap: the model's forward with its auxiliary head, as ``(logits, aux)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.model.forward_heads(x)
        return out.logits, out.aux


# what a training run writes into its output folder (--overwrite removes exactly these)
RUN_OUTPUTS = ("last", "best", "metrics.jsonl", "summary.json", "curves.png", "predictions.png", "tensorboard")


CROP_OVER_IMAGE = 2  # a crop side more than this times the largest image side is mostly padding


def warn_if_crop_dwarfs_images(crop_size: int, images: Sequence[Path], looked_at: int = 64) -> None:
    """Warn when ``crop_size`` is more than ``CROP_OVER_IMAGE`` times the largest side of the training images (the
    first ``looked_at``, read from their headers): every crop is then mostly padding, at (crop/side)^2 the work."""
    from PIL import Image

    sides = []
    for path in images[:looked_at]:
        try:
            with Image.open(path) as image:
                sides.append(max(image.size))
        except (OSError, ValueError):  # the dataset reports unreadable images by name when it reads them
            continue
    if sides and crop_size > CROP_OVER_IMAGE * max(sides):
        warnings.warn(f"augment.crop_size {crop_size} is more than {CROP_OVER_IMAGE}x the largest side of the "
                      f"training images ({max(sides)} px, of {len(sides)} looked at): every crop is mostly padding "
                      f"and costs about {(crop_size / max(sides)) ** 2:.0f}x the work; use a crop_size near the "
                      "images' size", UserWarning, stacklevel=3)


def prepare_output(output_dir: Path, resume: bool, overwrite: bool, main: bool = True) -> None:
    """An existing run is continued (``resume``) or replaced (``overwrite``, said aloud; by the main process
    only), never silently mixed."""
    if resume and overwrite:
        raise InvalidValueError("--resume and --overwrite exclude each other: continue the run, or start it clean")
    if output_dir.exists() and not output_dir.is_dir():
        raise NotAFolderError(f"output {str(output_dir)!r} is a file, not a run folder")
    existing = [name for name in RUN_OUTPUTS if (output_dir / name).exists()]
    if not existing or resume:
        return
    if not overwrite:
        raise OutputExistsError(
            f"{str(output_dir)!r} already holds a training run ({', '.join(existing)}); use --resume to continue "
            "it, --overwrite to replace it, or another --output folder"
        )
    if not main:
        return
    print(f"segzoo: --overwrite: removing the previous run's {', '.join(existing)} from {str(output_dir)!r}",
          flush=True)
    for name in existing:
        path = output_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _ListSampler(torch.utils.data.Sampler):
    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


PROGRESS_SECONDS = 30.0  # off a terminal, a progress line at least this often


def resolve_amp(amp: str, device: torch.device) -> str:
    """``train.amp`` for ``device``: ``auto`` is bf16 where the device computes bf16 natively, else none; an
    explicit bf16 on a CPU that only emulates it trains, with one warning giving the measured cost."""
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    if amp == "bf16" and device.type == "cpu" and not native_bf16(device):
        warnings.warn("train.amp=bf16 on a CPU without AVX512-BF16 or AMX: PyTorch emulates bf16 here, measured "
                      "46x slower than fp32 (one fine-tune epoch: 1,209 s vs 26 s on an AVX2-only AMD EPYC); "
                      "train.amp=auto picks what this machine runs natively", UserWarning, stacklevel=3)
    return amp


class Trainer:
    """Train a model described by a :class:`Recipe`, writing checkpoints and logs into ``output_dir``.

    ``output_dir/last`` is the resumable checkpoint (written after every epoch and on
    SIGINT / SIGTERM), ``output_dir/best`` the best model by ``train.monitor`` in the
    ``save_pretrained`` layout, ``output_dir/metrics.jsonl`` every logged figure.
    """

    def __init__(
        self,
        recipe: Recipe,
        output_dir: str | Path,
        *,
        resume: bool | str | Path = False,
        overwrite: bool = False,
        loss: nn.Module | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.recipe = recipe
        self.callbacks = list(callbacks)
        self.monitor = Monitor.of(recipe.train.monitor)
        self.cfg = recipe.train
        self.output_dir = Path(output_dir)
        self._claim_output(bool(resume), overwrite)
        self._load_teacher()  # its classes are checked before any data is read
        self._build_data()
        self.model = self._build_model()
        self.train_model = self._training_forward(self.model)
        self._build_optimisation(loss)
        self._reset_progress()
        if resume:
            self._resume(self.output_dir / "last" if resume is True else Path(resume))

    # -- construction, in order ---------------------------------------------------------
    def _claim_output(self, resume: bool, overwrite: bool) -> None:
        """Device, process group, the output folder (locked: one run owns it), seeds."""
        cfg = self.cfg
        self.device = pick_device(cfg.device)
        self.ctx: DistContext = setup_distributed(self.device)
        # one run owns a folder: a second `segzoo train -o` on it is an error naming the owner's pid (the lock
        # dies with the process, so a killed run leaves none)
        check_output(self.output_dir, "output", folder=True)  # before the lock makes the folder
        self._lock = RunLock(self.output_dir, "run folder") if self.ctx.is_main else None
        prepare_output(self.output_dir, resume, overwrite, main=self.ctx.is_main)
        if self.device.type == "cuda" and self.ctx.enabled:
            self.device = torch.device("cuda", self.ctx.local_rank)
            torch.cuda.set_device(self.device)
        seed_everything(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False

    def _load_teacher(self) -> None:
        recipe = self.recipe
        self.teacher: Teacher | None = None
        if recipe.distill.teacher:
            self.teacher = Teacher.load(recipe.distill.teacher, list(recipe.data.classes), self.device,
                                        torch.bfloat16 if recipe.distill.teacher_amp == "bf16" else None,
                                        channels_last=self.cfg.channels_last)
            self.distill_loss = build_distill_loss(recipe.distill.loss, recipe.distill.temperature,
                                                   recipe.data.ignore_index).to(self.device)

    def _build_data(self) -> None:
        """The splits, after every mask was scanned (bad masks and absent classes said before any work)."""
        recipe, data = self.recipe, self.recipe.data
        train_pairs, val_pairs = build_pairs(data, "train"), build_pairs(data, "val")
        scanned = scan_masks([mask for _, mask in train_pairs + val_pairs], data.decoder())
        scanned.check_classes(data, "train", [mask for _, mask in train_pairs])
        warn_if_crop_dwarfs_images(recipe.augment.crop_size, [image for image, _ in train_pairs])
        self.train_set = SegmentationDataset(
            train_pairs, data.decoder(), recipe.augment.train_transform(data.ignore_index, data.classes),
            self.cfg.seed)
        self.val_set = SegmentationDataset(val_pairs, data.decoder(), recipe.augment.eval_transform())

    def _build_model(self) -> SegmentationModel:
        """The recipe's model with the meta its weights will carry, on the device."""
        recipe, cfg = self.recipe, self.cfg
        model = recipe.model.build(recipe.data.num_classes)
        model.meta = self._meta_for(model)
        if recipe.augment.crop_size % model.input_divisor:
            warnings.warn(f"augment.crop_size {recipe.augment.crop_size} is not a multiple of the model's input "
                          f"divisor {model.input_divisor}: every crop is padded to the next multiple",
                          UserWarning, stacklevel=3)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.to(self.device)
        if cfg.sync_bn and self.ctx.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def _meta_for(self, model: SegmentationModel) -> ModelMeta:
        """Classes, colours, preprocessing and lineage (fine-tuned from, distilled from) of the trained weights."""
        recipe, data = self.recipe, self.recipe.data
        tuned = bool(recipe.model.pretrained)
        if tuned:  # a fine-tune: its weights' preprocessing and requirements, unless stated
            preprocessing = inherit(recipe, model, recipe.model.pretrained)
        else:
            preprocessing = recipe.augment.preprocessing_config() or model.meta.preprocessing
        teacher = None if self.teacher is None else {
            **self.teacher.provenance(), "loss": recipe.distill.loss, "weight": str(recipe.distill.weight),
            "weight_schedule": recipe.distill.weight_schedule, "temperature": str(self.distill_loss.temperature)}
        return ModelMeta(
            class_names=list(data.classes),
            class_colours=data.class_colours(),
            preprocessing=preprocessing,
            dataset=Path(data.root).name,
            encoder_weights=model.meta.encoder_weights if tuned else None,
            parent=model.loaded_from if tuned else None,
            pruning=_pruning_lineage(model.meta) if tuned else None,
            ancestry=model.meta.descendants_ancestry(model.loaded_from or {}) if tuned else [],
            training={key: getattr(self.cfg, key) for key in INHERITED},
            teacher=teacher,
        )

    def _training_forward(self, model: nn.Module) -> nn.Module:
        """What the optimiser steps through: the model's training outputs, in DDP and compiled where asked."""
        wrapped: nn.Module = _TrainingForward(model)
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=ids)
        if self.cfg.compile:
            # static shapes (training crops have one size): symbolic sizes after a size change cost Swin-UNet
            # over ten minutes in torch 2.15's shape solver
            wrapped = torch.compile(wrapped, dynamic=False)
        return wrapped

    def _build_optimisation(self, loss: nn.Module | None) -> None:
        """Precision, optimiser, schedule, EMA and loss."""
        cfg, model = self.cfg, self.model
        self.amp = resolve_amp(cfg.amp, self.device)
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.optimizer = build_optimizer(model, cfg)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = build_scheduler(self.optimizer, cfg, cfg.epochs * self.steps_per_epoch)
        # a metric-driven schedule steps once per validation, the others once per optimiser step
        self._scheduler_takes_metric = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        self.ema = None
        if cfg.ema_decay:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.loss_fn = (loss or build_loss(cfg.loss, self.recipe.data.ignore_index, cfg.class_weights)).to(self.device)

    def _reset_progress(self) -> None:
        self.epoch = 0  # epochs completed
        self.batch = 0  # micro-batches done in the current epoch (at an optimiser-step boundary)
        self.global_step = 0
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_validations = 0
        self.history: list[dict[str, Any]] = []
        self._stop_signal: int | None = None
        self._deadline: float | None = None  # perf_counter() past which fit() stops (train.max_seconds)
        self._out_of_time = False  # fit() stopped mid-epoch at the time limit
        self._last_line = 0.0  # when the last progress line was printed (off a terminal)
        self._stop_reason: str | None = None
        self.interrupted: TrainingInterrupted | None = None  # set when fit() ended on SIGINT / SIGTERM
        self._tb = None  # a TensorBoard writer while fit() runs with train.tensorboard

    # -- bookkeeping --------------------------------------------------------------------
    def _steps_per_epoch(self) -> int:
        per_rank = math.ceil(len(self.train_set) / self.ctx.world_size)
        batches = max(1, per_rank // self.cfg.batch_size)
        if self.cfg.max_steps_per_epoch:
            batches = min(batches, self.cfg.max_steps_per_epoch * self.cfg.grad_accum)
        return max(1, batches // self.cfg.grad_accum)

    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "global_step": self.global_step,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_validations": self.bad_validations,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_state(),
            "history": json.dumps(self.history),
        }

    def save_last(self) -> Path:
        path = self.output_dir / "last"
        if self.ctx.is_main:
            extras = {"recipe.json": self.recipe.to_dict(), "transforms.json": self._transforms()}
            save_checkpoint(path, self.model, self._state(), extras)
        return path

    def _transforms(self) -> dict[str, Any]:
        return {"train": transform_to_dict(self.train_set.transform), "eval": transform_to_dict(self.val_set.transform)}

    def _resume(self, directory: Path) -> None:
        weights, state = load_checkpoint(directory)
        names = weights.meta.class_names
        if names is not None and list(names) != list(self.recipe.data.classes):
            raise InvalidValueError(
                f"checkpoint {str(directory)!r} was trained on classes {names}, "
                f"the recipe has {self.recipe.data.classes}"
            )
        own = self.model.state_dict()
        if set(own) != set(weights.state_dict) or any(own[k].shape != v.shape for k, v in weights.state_dict.items()):
            theirs, ours = weights.config, self.model.config
            raise InvalidValueError(
                f"checkpoint {str(directory)!r} holds a {theirs.decoder}/{theirs.encoder.name} model with "
                f"{theirs.num_classes} classes that does not match the recipe's {ours.decoder}/{ours.encoder.name} "
                f"({ours.num_classes} classes); resume with the recipe the run was started with, or start a new "
                "run (--overwrite or another --output)"
            )
        self.model.load_state_dict(weights.state_dict, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        for key in ("epoch", "batch", "global_step", "best", "best_epoch", "bad_validations"):
            setattr(self, key, state[key])
        self.history = json.loads(state["history"])
        set_rng_state(state["rng"])
        self._truncate_log(int(state["epoch"]))

    def _truncate_log(self, epoch: int) -> None:
        """Drop the records of epochs after the checkpoint's from ``metrics.jsonl``: a run that crashed after
        logging an epoch but before its checkpoint would otherwise log that epoch twice."""
        log = self.output_dir / "metrics.jsonl"
        if not self.ctx.is_main or not log.is_file():
            return
        lines = log.read_text().splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line torn by the crash
                continue
            if isinstance(record, dict) and int(record.get("epoch", 0)) <= epoch:
                kept.append(line)
        if len(kept) != len(lines):
            with atomic_path(log) as tmp:
                tmp.write_text("".join(f"{line}\n" for line in kept))

    def _log(self, record: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        log = self.output_dir / "metrics.jsonl"
        try:
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:  # a full disk: a one-line error naming the file (resume drops a torn line)
            error = write_error(log, exc)
            if error is exc:
                raise
            raise error from exc
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self._tb.add_scalar(f"{record['split']}/{key}", value, record.get("step", 0))

    # -- signals ------------------------------------------------------------------------
    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop at the next optimiser step, saving a checkpoint (what SIGINT / SIGTERM do)."""
        self._stop_signal = signum

    def stop(self, reason: str) -> None:
        """End ``fit`` after the current epoch (checkpoint written as usual); ``reason`` goes into the summary."""
        self._stop_reason = str(reason)

    def _should_stop(self) -> tuple[int | None, bool]:
        """(the stop signal received, whether the time limit has passed), agreed by every rank so that all stop
        at the same step."""
        time_up = self._deadline is not None and time.perf_counter() > self._deadline
        if not self.ctx.enabled:
            return self._stop_signal, time_up
        import torch.distributed as dist

        flag = torch.tensor([self._stop_signal or 0, int(time_up)], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag[0]) or None, bool(flag[1])

    def _progress_line(self, text: str) -> None:
        """Off a terminal (no progress bar), a line at least every ``PROGRESS_SECONDS``, so that a log shows the
        run is alive inside a long epoch."""
        now = time.perf_counter()
        if self.cfg.progress and self.ctx.is_main and now - self._last_line >= PROGRESS_SECONDS:
            print(text, flush=True)
            self._last_line = now

    @contextlib.contextmanager
    def _signals(self):
        handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[sig] = signal.signal(sig, lambda signum, frame: self.request_stop(signum))
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        try:
            yield
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    # -- loops --------------------------------------------------------------------------
    def _epoch_indices(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        return shard(torch.randperm(len(self.train_set), generator=g).tolist(), self.ctx, pad=True)

    def _loader(self, dataset, indices: list[int], batch_size: int, drop_last: bool):
        return make_loader(dataset, batch_size, _ListSampler(indices), self.cfg.num_workers, drop_last=drop_last,
                           ignore_index=self.recipe.data.ignore_index, pin_memory=self.device.type == "cuda")

    def _set_encoder_frozen(self, epoch: int) -> None:
        n = self.cfg.freeze_encoder_epochs
        frozen = n == -1 or epoch < n
        self.model.encoder.requires_grad_(not frozen)
        if frozen:
            self.model.encoder.eval()  # frozen BatchNorm statistics too
        elif self.cfg.freeze_encoder_bn:
            for module in self.model.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _forward_loss(self, images: torch.Tensor, masks: torch.Tensor, raw: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """The task loss of normalised ``images``, plus the distillation term when a teacher is set (the teacher
        sees ``raw``, the same augmented uint8 batch, normalised its own way)."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits, aux = self.train_model(images)
        loss = self.loss_fn(logits, masks)
        if aux is not None:
            loss = loss + AUX_LOSS_WEIGHT * self.loss_fn(aux, masks)
        if self.teacher is not None and raw is not None:
            weight = self.recipe.distill.weight_at(self.global_step / (self.cfg.epochs * self.steps_per_epoch))
            loss = loss + weight * self.distill_loss(logits, self.teacher(raw), masks)
        return loss

    def _micro_step(self, images: torch.Tensor, masks: torch.Tensor, last_micro: bool) -> float:
        """Forward and backward of one micro-batch (uint8 images, class-id masks); returns its loss."""
        raw = images.to(self.device, non_blocking=True)
        images = normalize(raw, self.model.meta.preprocessing)
        masks = masks.to(self.device, non_blocking=True).long()
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        sync = self.train_model.no_sync() if self.ctx.enabled and not last_micro else contextlib.nullcontext()
        with sync:
            loss = self._forward_loss(images, masks, raw)
            value = float(loss.detach())  # the step's one host sync: finiteness check and running mean
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss is {value} at epoch {self.epoch + 1}, step {self.global_step + 1}; stopping. "
                    f"The last good checkpoint is kept in {self.output_dir / 'last'}"
                )
            self.scaler.scale(loss / self.cfg.grad_accum).backward()
        return value

    def _optimizer_step(self) -> None:
        if self.cfg.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if not self._scheduler_takes_metric:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.global_step += 1

    def _batches_forever(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        while True:
            self.train_set.set_epoch(epoch)
            yield from self._loader(self.train_set, self._epoch_indices(epoch), self.cfg.batch_size, drop_last=True)
            epoch += 1

    def run_steps(
        self, steps: int, batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> list[dict[str, float]]:
        """Run ``steps`` optimiser steps outside :meth:`fit` and return each one's ``loss`` and ``seconds``: to
        calibrate a schedule or benchmark a training step. ``batches`` yields (uint8 images ``(N, C, H, W)``,
        class-id masks ``(N, H, W)``), ``train.grad_accum`` of them per step; by default the training set.
        Nothing is logged or checkpointed; the optimiser, schedule and EMA advance as in training."""
        if steps < 1:
            raise InvalidValueError(f"run_steps needs at least one step, got {steps}")
        self.train_model.train()
        self._set_encoder_frozen(self.epoch)
        source = iter(batches) if batches is not None else self._batches_forever()
        results = []
        for _ in range(steps):
            start, losses = time.perf_counter(), []
            for micro in range(self.cfg.grad_accum):
                try:
                    images, masks = next(source)
                except StopIteration:
                    raise InvalidValueError(f"run_steps: the batches ran out after {len(results)} of {steps} steps"
                                            ) from None
                losses.append(self._micro_step(images, masks, last_micro=micro + 1 == self.cfg.grad_accum))
            self._optimizer_step()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            results.append({"loss": sum(losses) / len(losses), "seconds": time.perf_counter() - start})
            for callback in self.callbacks:
                callback.on_step_end(self, results[-1]["loss"])
        return results

    def _train_epoch(self, epoch: int, progress) -> float:
        cfg = self.cfg
        self.train_set.set_epoch(epoch)
        self.train_model.train()
        self._set_encoder_frozen(epoch)
        indices = self._epoch_indices(epoch)[self.batch * cfg.batch_size :]
        loader = self._loader(self.train_set, indices, cfg.batch_size, drop_last=len(indices) >= cfg.batch_size)
        total_micro = self.steps_per_epoch * cfg.grad_accum
        loss_sum, seen, t0 = 0.0, 0, time.perf_counter()
        micro = self.batch
        step_loss, step_seen = 0.0, 0
        for images, masks in loader:
            if micro >= total_micro:
                break
            last_micro = (micro + 1) % cfg.grad_accum == 0
            value = self._micro_step(images, masks, last_micro)
            micro += 1
            loss_sum += value * images.shape[0]
            seen += images.shape[0]
            step_loss, step_seen = step_loss + value * images.shape[0], step_seen + images.shape[0]
            if not last_micro:
                continue
            self._optimizer_step()
            self.batch = micro
            for callback in self.callbacks:
                callback.on_step_end(self, step_loss / step_seen)
            step_loss, step_seen = 0.0, 0
            rate = seen * self.ctx.world_size / max(time.perf_counter() - t0, 1e-9)
            lr = self.optimizer.param_groups[-1]["lr"]
            if progress is not None:
                progress.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
                progress.update(1)
            else:
                self._progress_line(f"epoch {epoch + 1}/{cfg.epochs} step {micro // cfg.grad_accum}/"
                                    f"{self.steps_per_epoch} loss {loss_sum / seen:.4f} lr {lr:.2e} "
                                    f"{rate:.1f} img/s")
            signum, time_up = self._should_stop()
            if signum:
                path = self.save_last()
                raise TrainingInterrupted(signum, path)
            if time_up and micro < total_micro:  # stop within a step of the limit; last/ resumes mid-epoch
                self._out_of_time = True
                break
        mean = loss_sum / max(seen, 1)
        rate = seen * self.ctx.world_size / max(time.perf_counter() - t0, 1e-9)
        self._log({"split": "train", "epoch": epoch + 1, "step": self.global_step, "loss": mean,
                   "lr": self.optimizer.param_groups[-1]["lr"], "images_per_s": rate})
        return mean

    def validate(self) -> dict[str, Any]:
        model = self.ema.module if self.ema is not None else self.model
        indices = shard(list(range(len(self.val_set))), self.ctx, pad=False)
        loader = self._loader(self.val_set, indices, self.cfg.val_batch_size, drop_last=False)
        return evaluate(model, loader, self.recipe.data.num_classes, self.recipe.data.ignore_index,
                        self.device, self.model.meta.preprocessing, self.amp_dtype, self.loss_fn)

    def fit(self) -> dict[str, Any]:
        """Run the remaining epochs; returns a summary (best metric, epochs run, stop reason). The run folder's
        lock is released when it returns or raises."""
        if self.ctx.is_main and (self._lock is None or self._lock.fd is None):
            self._lock = RunLock(self.output_dir, "run folder")  # a second fit() of this trainer
        try:
            return self._fit()
        finally:
            if self._lock is not None:
                self._lock.release()

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.tensorboard and self.ctx.is_main:
            from torch.utils.tensorboard import (
                SummaryWriter,  # needs the tensorboard package
            )

            self._tb = SummaryWriter(str(self.output_dir / "tensorboard"))
        start = self._last_line = time.perf_counter()
        self._deadline = None if cfg.max_seconds is None else start + cfg.max_seconds
        reason = "completed"
        progress = None
        self.interrupted, self._stop_reason, self._out_of_time = None, None, False
        for callback in self.callbacks:
            callback.on_fit_start(self)
        try:
            with self._signals():
                if cfg.progress and self.ctx.is_main and sys.stderr.isatty():
                    from tqdm.auto import tqdm

                    progress = tqdm(total=cfg.epochs * self.steps_per_epoch, initial=self.global_step,
                                    desc="train", unit="step", dynamic_ncols=True)
                while self.epoch < cfg.epochs:
                    epoch = self.epoch
                    if progress is not None:
                        progress.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
                    train_loss = self._train_epoch(epoch, progress)
                    if self._out_of_time:
                        reason = "time_limit"
                        self._stop_mid_epoch(epoch, start)
                        break
                    self.epoch, self.batch = epoch + 1, 0
                    record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss}
                    if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
                        if progress is None:
                            self._progress_line(f"epoch {epoch + 1}/{cfg.epochs}: validating on "
                                                f"{len(self.val_set)} images")
                        metrics = self.validate()
                        record.update({f"val_{k}": v for k, v in metrics.items() if not isinstance(v, list)})
                        self._log({"split": "val", "epoch": epoch + 1, "step": self.global_step, **metrics})
                        reason = self._after_validation(epoch, metrics) or reason
                    for callback in self.callbacks:
                        callback.on_epoch_end(self, record)
                    self.history.append(record)
                    self.save_last()
                    if cfg.progress and progress is None and self.ctx.is_main:  # no terminal: a line per epoch
                        shown = {k: round(v, 4) for k, v in record.items() if isinstance(v, float)}
                        print(f"epoch {epoch + 1}/{cfg.epochs} {json.dumps(shown)}", flush=True)
                    if reason == "early_stopping":
                        break
                    if self._stop_reason is not None:
                        reason = self._stop_reason
                        break
                    if self._should_stop()[1]:
                        reason = "time_limit"
                        break
        except TrainingInterrupted as exc:
            reason = f"interrupted ({signal.Signals(exc.signum).name})"
            if self.ctx.is_main:
                print(f"segzoo: {exc}; resume with --resume", flush=True)
            self.interrupted = exc
        finally:
            if progress is not None:
                progress.close()
            if self._tb is not None:
                self._tb.close()
        if self.ctx.is_main and cfg.plots and not reason.startswith("interrupted"):
            self._plots()
        summary = {"reason": reason, "epochs": self.epoch, "best": self.best, "best_epoch": self.best_epoch,
                   "monitor": cfg.monitor, "seconds": time.perf_counter() - start, "output_dir": str(self.output_dir)}
        if self.ctx.is_main:
            with atomic_path(self.output_dir / "summary.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2) + "\n")
        for callback in self.callbacks:
            callback.on_fit_end(self, summary)
        return summary

    def _stop_mid_epoch(self, epoch: int, start: float) -> None:
        """The time limit passed inside an epoch: save the resumable checkpoint at this step and say so. A run
        stopped before any validation validates the weights it has once, so that it leaves a ``best/`` (what
        evaluation, publishing and every later step read); the random state is kept as it was, so a resumed run
        still equals an uninterrupted one."""
        validated = self.best_epoch is None
        if validated:
            state = rng_state()
            metrics = self.validate()
            self._log({"split": "val", "epoch": epoch + 1, "step": self.global_step, **metrics})
            value = float(metrics[self.cfg.monitor])  # recorded only: a plateau schedule does not step on it
            self._record_validation(epoch, metrics, value, self.monitor.improved(value, self.best))
            set_rng_state(state)
        path = self.save_last()
        if self.ctx.is_main:
            step = self.batch // self.cfg.grad_accum
            best = ("no validation had run, so the weights at this step were validated into best/" if validated
                    else "best/ holds the best validated model")
            print(f"segzoo: train.max_seconds ({self.cfg.max_seconds:g} s) reached after "
                  f"{time.perf_counter() - start:.0f} s, at epoch {epoch + 1} step {step}/{self.steps_per_epoch}; "
                  f"{best}; {path} resumes from this step (--resume)", flush=True)

    def _after_validation(self, epoch: int, metrics: dict[str, Any]) -> str | None:
        cfg = self.cfg
        if cfg.monitor not in metrics:
            raise InvalidValueError(f"train.monitor {cfg.monitor!r} is not a metric; metrics: {sorted(metrics)}")
        value = float(metrics[cfg.monitor])
        if self._scheduler_takes_metric:
            self.scheduler.step(value)  # built with the monitor's mode
        improved = self.monitor.improved(value, self.best)
        outcome = self._record_validation(epoch, metrics, value, improved)
        for callback in self.callbacks:
            callback.on_validation_end(self, metrics, improved)
        return outcome

    def _record_validation(self, epoch: int, metrics: dict[str, Any], value: float, improved: bool) -> str | None:
        cfg = self.cfg
        if improved:
            self.best, self.best_epoch, self.bad_validations = value, epoch + 1, 0
            if self.ctx.is_main:
                model = self.ema.module if self.ema is not None else self.model
                model.meta = self.model.meta
                model.save_pretrained(
                    str(self.output_dir / "best"),
                    metrics={k: round(float(v), 5) for k, v in metrics.items()
                             if not isinstance(v, list) and math.isfinite(v)},
                    description=f"Best checkpoint (epoch {epoch + 1}, {cfg.monitor} {value:.4f}) of a segzoo run.",
                    extra_files={"transforms.json": json.dumps(self._transforms(), indent=2)},
                )
            return None
        self.bad_validations += 1
        if cfg.early_stopping and self.bad_validations >= cfg.early_stopping:
            return "early_stopping"
        return None

    def _plots(self) -> None:
        try:
            from segzoo.training.plots import plot_curves, plot_predictions
        except ImportError as exc:  # matplotlib is an optional extra
            print(f"segzoo: plots skipped ({exc}); {install_hint('plots')}", flush=True)
            return
        plot_curves(self.history, self.output_dir / "curves.png", self.cfg.monitor)
        model = self.ema.module if self.ema is not None else self.model
        plot_predictions(model, self.val_set, self.output_dir / "predictions.png", self.device)
