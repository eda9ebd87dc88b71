"""The training loop both stages share: steps, validation, checkpoints, exact resume, logs.

A stage supplies its model, data set, batch order, loss and validation (:class:`Stage`); the loop
does the rest the same way for both. Position in training is (step, epoch, batch in epoch); with
the batch order and every sample a function of (seed, epoch, index), a run resumed from a
checkpoint continues exactly as the uninterrupted run would have (on the CPU, bit for bit).

Files in the run folder (rank 0 writes; every write is atomic):

- ``model.safetensors``: the weights and spec (``tumsyn.models.load_checkpoint`` rebuilds it), with
  the step and the latest metrics;
- ``state.pt``: weights, optimiser, schedule, position and random states, for ``--resume`` (read
  with ``torch.load(weights_only=True)``);
- ``pipeline.safetensors`` (stage 2): the deployable model, conditioner and network, written
  after ``model.safetensors`` at every checkpoint, so ``tumsyn synthesize --checkpoint`` runs any
  run's latest weights;
- ``metrics.csv``: one row per step (loss, learning rate, samples/s; validation columns every
  ``validate_every`` steps), and TensorBoard events when ``tensorboard`` is installed.

A checkpoint writes ``metrics.csv``, then ``state.pt``, then ``model.safetensors``, so a run killed
at any moment resumes from one consistent step: ``state.pt`` alone decides where (its own weights,
not ``model.safetensors``, which may be one checkpoint behind), and ``metrics.csv`` rows past that
step are dropped. Temporary files of a write the kill interrupted are deleted on the next start.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tumsyn.distributed import World
from tumsyn.errors import ConfigError
from tumsyn.io import atomic_output, remove_stale_temporaries
from tumsyn.models.checkpoint import save_checkpoint
from tumsyn.train.config import ContrastiveTrainConfig, SynthesisTrainConfig
from tumsyn.train.optim import make_optimizer, make_scheduler
from tumsyn.train.sampling import ResumableBatches

__all__ = ["RunRecords", "Stage", "TrainResult", "run_records", "train"]

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
METRICS_FILE = "metrics.csv"
EXPORT_FILE = "pipeline.safetensors"


@dataclass
class Stage:
    """What one training stage brings to the loop."""

    model: nn.Module  # trained and checkpointed
    dataset: Dataset  # with set_epoch(epoch) if its samples depend on the epoch
    batches: Any  # epoch-aware global batch sampler (set_epoch, __iter__, __len__)
    loss: Callable[[nn.Module, Mapping[str, torch.Tensor]], torch.Tensor]
    validate: Callable[[nn.Module], dict[str, float]]
    samples_per_batch: int
    workers: int = 0  # DataLoader worker processes
    after_step: Callable[[nn.Module], None] = lambda model: None
    extra: dict[str, Any] = field(default_factory=dict)  # stored with the checkpoint
    # (trained model, checkpoint facts) -> (module, facts) written to pipeline.safetensors
    export: Callable[[nn.Module, dict[str, Any]], tuple[nn.Module, dict[str, Any]]] | None = None


@dataclass(frozen=True)
class RunRecords:
    """The images of a run: split by subject, and the distinct prompts with their indices."""

    train: list
    validation: list
    prompts: list[str]
    prompt_ids: dict[str, int]


def run_records(config: ContrastiveTrainConfig | SynthesisTrainConfig) -> RunRecords:
    """Index the configured data and hold out the validation subjects (same for both stages)."""
    from tumsyn.data import load_index, split_subjects

    records = load_index(config.data.source)
    train_records, validation = split_subjects(
        records, config.data.validation_fraction, config.seed
    )
    prompts = sorted({record.prompt for record in records})
    return RunRecords(train_records, validation, prompts, {p: n for n, p in enumerate(prompts)})


@dataclass(frozen=True)
class TrainResult:
    folder: Path
    model: nn.Module  # this process's copy of the trained model
    step: int


def _to(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


class _MetricsLog:
    """metrics.csv (rows up to the resumed step kept) and, if installed, TensorBoard."""

    def __init__(self, folder: Path, resumed_step: int) -> None:
        self.path = folder / METRICS_FILE
        self.rows: list[dict[str, Any]] = []
        if resumed_step and self.path.is_file():
            with self.path.open(newline="") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resumed_step]
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops the events a killed run logged after its last checkpoint, which
            # the resumed run logs again (as metrics.csv keeps only rows up to the resumed step).
            purge = resumed_step + 1 if resumed_step else None
            self.board = SummaryWriter(str(folder / "tensorboard"), purge_step=purge)
        except ImportError:
            self.board = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.board is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, float):
                    self.board.add_scalar(key, value, row["step"])

    def flush(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [key for key in row if key not in columns]
        with atomic_output(self.path) as temporary, temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        if self.board is not None:
            self.board.flush()


def _save(folder, model, optimizer, scheduler, position, metrics, extra, export) -> None:
    """Write ``state.pt``, weights included, then ``model.safetensors`` (and the export).

    Each write is atomic, but a kill can fall between the two; resuming reads the weights from
    ``state.pt``, so they always belong to the step of the optimiser and position beside them.
    """
    step, epoch, batch = position
    state = {
        "model": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "position": torch.tensor([step, epoch, batch]),
        "torch_rng": torch.get_rng_state(),
    }
    with atomic_output(folder / STATE_FILE) as temporary:
        torch.save(state, temporary)
    facts = {**extra, "step": step, "metrics": metrics}
    save_checkpoint(folder / MODEL_FILE, model, extra=facts)
    if export is not None:
        exported, exported_facts = export(model, facts)
        save_checkpoint(folder / EXPORT_FILE, exported, extra=exported_facts)


def _remove_interrupted_writes(folder: Path) -> None:
    """Delete what a killed run left half-written, so the run folder holds only finished files."""
    for name in (MODEL_FILE, STATE_FILE, METRICS_FILE, EXPORT_FILE):
        remove_stale_temporaries(folder / name)


def _older_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a run whose ``state.pt`` predates them being stored there."""
    from safetensors.torch import load_file

    return load_file(str(folder / MODEL_FILE))


def _load(folder: Path, model, optimizer, scheduler) -> tuple[int, int, int]:
    """Restore everything from ``state.pt`` alone; return the (step, epoch, batch) to go on from."""
    if not (folder / STATE_FILE).is_file():
        raise ConfigError(f"{folder}: nothing to resume (no {STATE_FILE})")
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"] if "model" in state else _older_weights(folder))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    step, epoch, batch = (int(v) for v in state["position"])
    return step, epoch, batch


def train(
    config: ContrastiveTrainConfig | SynthesisTrainConfig,
    stage: Stage,
    world: World,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> TrainResult:
    """Run (or resume) training to ``config.steps``.

    ``stop_at`` ends the run early after that step, with a checkpoint, exactly as an
    interruption after a checkpoint would (the schedule still spans ``config.steps``).
    """
    from tqdm import tqdm

    folder = Path(config.out)
    if world.is_main:
        if not resume and (folder / STATE_FILE).exists():
            raise ConfigError(f"{folder}: a run is already there; pass --resume or change 'out'")
        folder.mkdir(parents=True, exist_ok=True)
        _remove_interrupted_writes(folder)
    model = stage.model.to(world.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config.optimizer, trainable)
    scheduler = make_scheduler(config.schedule, optimizer, config.steps)
    step, epoch, position = _load(folder, model, optimizer, scheduler) if resume else (0, 0, 0)
    network = model
    if world.size > 1:
        device_ids = [world.device.index] if world.device.type == "cuda" else None
        network = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    autocast = world.device.type == "cuda" and config.amp
    log = _MetricsLog(folder, step) if world.is_main else None
    sampler = ResumableBatches(stage.batches, rank=world.rank, world=world.size)
    workers = stage.workers
    bar = tqdm(
        total=config.steps, initial=step, unit="step", disable=not (progress and world.is_main)
    )
    metrics: dict[str, float] = {}
    last = config.steps if stop_at is None else min(stop_at, config.steps)
    while step < last:
        sampler.set_position(epoch, position)
        if hasattr(stage.dataset, "set_epoch"):
            stage.dataset.set_epoch(epoch)
        loader = DataLoader(stage.dataset, batch_sampler=sampler, num_workers=workers)
        started = time.perf_counter()
        for batch in loader:
            network.train()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                loss = stage.loss(network, _to(batch, world.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            scheduler.step()
            stage.after_step(model)
            step, position = step + 1, position + 1
            elapsed, started = time.perf_counter() - started, time.perf_counter()
            row: dict[str, Any] = {
                "step": step,
                "epoch": epoch,
                "loss": float(loss.detach()),
                "lr": float(scheduler.get_last_lr()[0]),
                "samples_per_s": stage.samples_per_batch * world.size / max(elapsed, 1e-9),
            }
            if world.is_main and (step % config.validate_every == 0 or step == config.steps):
                model.eval()
                with torch.no_grad():
                    metrics = stage.validate(model)
                row.update(metrics)
            if log is not None:
                log.add(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}",
                            rate=f"{row['samples_per_s']:.1f}/s")  # fmt: skip
            bar.update()
            if step >= last:
                break
            if world.is_main and step % config.checkpoint_every == 0:
                log.flush()
                _save(folder, model, optimizer, scheduler, (step, epoch, position), metrics,
                      stage.extra, stage.export)  # fmt: skip
        else:
            epoch, position = epoch + 1, 0
    bar.close()
    extra = {**stage.extra, "world_size": world.size}
    if world.size > 1:
        extra["ranks_identical"] = _ranks_identical(model)
    if world.is_main:
        log.flush()
        _save(folder, model, optimizer, scheduler, (step, epoch, position), metrics, extra,
              stage.export)  # fmt: skip
    return TrainResult(folder, model, step)


def _ranks_identical(model: nn.Module) -> bool:
    """Whether every process ends with bit-identical parameters (as DDP must guarantee).

    Buffers are left out: batch-norm running statistics follow each process's own last batch
    (DDP broadcasts rank 0's at every forward), and rank 0's are the ones saved.
    """
    import hashlib

    import torch.distributed as dist

    digest = hashlib.sha256()
    for value in model.parameters():
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1
