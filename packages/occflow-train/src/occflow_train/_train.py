"""Two-stage training with ``accelerate``: configs, presets, data set-up and the loop.

Stage 1 learns the static geometry (SDF) with the NeuS sharpness ``inv_s`` learnable and the
flow head frozen; stage 2 starts from the stage-1 weights and trains geometry and flow jointly
with ``inv_s`` frozen and smaller learning rates on the encoder and the temporal modules
(paper section 3.4, REFERENCE.md).

Determinism and resume: the data order depends only on (seed, epoch) (accelerate's seedable
sampler), the rays and samples of optimiser step ``s`` on process ``r`` only on (seed, s, r), and
a checkpoint stores weights, optimiser, scheduler and counters. A run killed at any moment and
resumed with ``resume=True`` therefore ends with the same weights as an uninterrupted run on the
CPU (``tests/test_train.py`` checks it).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

import occflow_data as od

from ._checkpoint import Progress, latest_checkpoint, read_progress, save_checkpoint
from ._config import MODEL_PRESETS, LossConfig, ModelConfig, RenderConfig
from ._eval_utils import STEP_SECONDS
from ._losses.compute import compute_losses
from ._losses.supervised import OccupancyLossConfig, occupancy_losses
from ._model import OccFlowModel
from ._optim import OptimConfig, freeze_zero_lr, make_optimizer, make_scheduler

DatasetName = Literal["synthetic", "nuscenes", "kitti-odometry", "kitti-mot"]


# ----------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class DataConfig:
    """Which data to train and evaluate on.

    Attributes:
        dataset: "synthetic" (the built-in world, generated on first use), "nuscenes",
            "kitti-odometry" (KITTI odometry + SemanticKITTI layout) or "kitti-mot" (KITTI tracking).
        root: dataset root; None with "synthetic" uses the cached default world.
        version: nuScenes table version ("v1.0-mini", "v1.0-trainval").
        train_split: split (or comma-separated scene names) to train on.
        val_split: split to evaluate on.
        occ_root: nuScenes: folder holding Occ3D's ``gts/`` (None: ``root`` if it has ``gts/``).
        cue_cache: folder of cached 2-D cues (pseudolabels layout); None: ``<root>/cues``.
        cues: cached cues the losses use: "track" (flow to the next keyframe chained through the
            sweeps) or "flow" (direct), and "mask" (movable-object mask).
        make_cues: generate missing cues with ``pseudolabels`` before training (DIS optical flow
            and the geometric movable mask; no labels are used).
        dis_preset: OpenCV DIS preset of the generated flow ("ultrafast", "fast", "medium").
        mask_method: how the generated movable-object mask is made: "geometric" (residual between
            optical flow and the rigid flow of LiDAR depth; no labels) or "boxes" (the dataset's
            annotation boxes of movable classes projected into the images: USES LABELS, a stand-in
            for the pretrained 2-D segmentation network of the paper, which cannot be downloaded here).
        sequence: how samples are assembled (history, supervision frames, resolutions).
        num_workers: DataLoader worker processes.
        max_val_samples: evaluate on at most this many validation samples (0 = all).
    """

    dataset: DatasetName = "synthetic"
    root: Path | None = None
    version: str = "v1.0-mini"
    train_split: str = "mini_train"
    val_split: str = "mini_val"
    occ_root: Path | None = None
    cue_cache: Path | None = None
    cues: tuple[str, ...] = ("track", "mask")
    make_cues: bool = True
    dis_preset: str = "medium"
    mask_method: Literal["geometric", "boxes"] = "geometric"
    sequence: od.SequenceConfig = od.SequenceConfig()
    num_workers: int = 0
    max_val_samples: int = 0


@dataclass(frozen=True)
class StageConfig:
    """One training stage.

    Attributes:
        steps: optimiser steps of the stage (0 skips it).
        optim: optimiser and schedule.
    """

    steps: int = 1000
    optim: OptimConfig = OptimConfig()


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation and pictures.

    Attributes:
        every: evaluate every this many optimiser steps during training (0 = only at the end).
        rayiou_origins: "window" (Let Occ Flow: keyframes ref-3 .. ref+2) or "scene" (SparseOcc).
        pictures: number of validation frames drawn after training (0 = none).
        depth_range: (min, max) LiDAR range scored by the depth metrics, metres.
        render_chunk: rays rendered at once during evaluation.
        image_dependence: also predict every validation sample with all camera images blanked
            (uniform grey) and report that prediction's RayIoU and the share of above-ground
            occupied cells (centre above 0.2 m) that differ from the real prediction, ``|real xor
            blank| / |real or blank|`` (0: the model ignores the cameras). One more forward pass
            per sample.
    """

    every: int = 0
    rayiou_origins: Literal["window", "scene"] = "window"
    pictures: int = 2
    depth_range: tuple[float, float] = (0.1, 80.0)
    render_chunk: int = 65536
    image_dependence: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; presets in :data:`PRESETS`, any field overridable.

    Attributes:
        data: the data.
        model: the network (a :data:`MODEL_PRESETS` entry by default).
        supervision: "self" (Let Occ Flow: rendering, photometric and flow cues, optional LiDAR; no
            3-D labels) or "occupancy" (the same model and schedule trained from the dataset's
            ground-truth occupancy and flow with ``occupancy_loss``: the ceiling the
            self-supervised numbers are read against; needs ground truth in the training split).
        loss: loss weights and settings of the self-supervised run (eq. 12).
        occupancy_loss: loss weights of ``supervision="occupancy"``.
        render: ray sampling and rendering of the losses.
        stage: "1", "2" or "both" (stage 1 then stage 2 from its weights).
        stage1: the static stage (inv_s learnable, flow head frozen).
        stage2: the joint stage (inv_s frozen, flow terms on).
        init_from: checkpoint (folder) whose model weights start stage 2 when ``stage="2"``.
        batch_size: samples per process and optimiser micro-step.
        grad_accum: micro-steps accumulated per optimiser step.
        mixed_precision: "no", "bf16" or "fp16" autocast.
        grad_checkpointing: recompute the encoder's activations in the backward pass.
        cos_anneal_steps: length of the NeuS cos-anneal in stage 1, optimiser steps (0 = off; the
            released code anneals over 5,000 iterations). Stage 2, evaluation and pictures use the ratio
            stage 1 ends with (:meth:`final_cos_anneal_ratio`; 1.0 once the anneal is complete).
        output_dir: run folder (checkpoints/, logs/, pictures/, metrics.json).
        resume: continue from the newest complete checkpoint in ``output_dir``.
        save_every: checkpoint every this many optimiser steps (and at the end of each stage).
        keep_last: complete checkpoints kept.
        log_every: log to TensorBoard every this many optimiser steps.
        eval: evaluation and pictures.
        seed: seed of everything random.
        progress: show progress bars.
    """

    data: DataConfig = DataConfig()
    model: ModelConfig = MODEL_PRESETS["synthetic-cpu"]
    supervision: Literal["self", "occupancy"] = "self"
    loss: LossConfig = LossConfig()
    occupancy_loss: OccupancyLossConfig = OccupancyLossConfig()
    render: RenderConfig = RenderConfig()
    stage: Literal["1", "2", "both"] = "both"
    stage1: StageConfig = StageConfig()
    stage2: StageConfig = StageConfig()
    init_from: Path | None = None
    batch_size: int = 1
    grad_accum: int = 1
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    grad_checkpointing: bool = False
    cos_anneal_steps: int = 0
    output_dir: Path = Path("runs/synthetic")
    resume: bool = False
    save_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    eval: EvalConfig = EvalConfig()
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "keep_last", "save_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {value!r}")
        for name in ("stage1", "stage2"):
            steps = getattr(self, name).steps
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                raise ValueError(f"TrainConfig.{name}.steps must be an int >= 0, got {steps!r}")
        if self.stage not in ("1", "2", "both"):
            raise ValueError(f"TrainConfig.stage must be '1', '2' or 'both', got {self.stage!r}")
        anneal = self.cos_anneal_steps
        if isinstance(anneal, bool) or not isinstance(anneal, int) or anneal < 0:
            raise ValueError(f"TrainConfig.cos_anneal_steps must be an int >= 0, got {anneal!r}")
        if self.supervision not in ("self", "occupancy"):
            raise ValueError(f"TrainConfig.supervision must be 'self' or 'occupancy', got "
                             f"{self.supervision!r}")
        if self.stage == "2" and self.init_from is None and not self.resume:
            raise ValueError("TrainConfig.stage='2' needs init_from (a stage-1 checkpoint folder) or resume")

    def stages(self) -> list[int]:
        """Stages to run, in order."""
        return {"1": [1], "2": [2], "both": [1, 2]}[self.stage]

    def final_cos_anneal_ratio(self) -> float | None:
        """The NeuS cos-anneal ratio stage 1 ends with (None = off). Stage 2, the evaluation's
        rendered depth and the pictures render with it, so they see the field as it was trained
        (1.0 once the anneal is complete, as in the released schedule)."""
        return cos_anneal(self.stage1.steps, self.cos_anneal_steps)


# ----------------------------------------------------------------------------------- presets
def _presets() -> dict[str, TrainConfig]:
    # The synthetic default world: 6 cameras at 112 x 200. Input = the full image, loss = half.
    synth_image = od.ImageConfig(input_scale=1.0, input_size=None, loss_scale=0.5, loss_size=None)
    synthetic = TrainConfig(
        data=DataConfig(sequence=od.SequenceConfig(history=2, image=synth_image, lidar_depth=True,
                                                   scene_start="pad"),
                        cues=("track", "mask"), dis_preset="fast", mask_method="boxes"),
        # NeuS sharpness fixed at exp(10 * 0.2) = 7.4 /m (lr x 0 below): learnt, it fell from 2.7 (or
        # from 7.4) to about 2 /m within 200 steps and the soft density lifted the road surface.
        model=replace(MODEL_PRESETS["synthetic-cpu"], deviation_init=0.2),
        # 4,096 LiDAR rays (the released count) and 32 extra flow rays per camera on movable objects
        render=RenderConfig(rays_per_camera=(12, 24), n_samples=64, lidar_rays=4096, flow_rays=32),
        # flow weights x10 of the paper's: the short CPU schedule has 100 flow steps, not 16 epochs;
        # LiDAR at weight 1 on plain log-RMSE (SILog lambda 0): with lambda 0.85 a uniform 15-20 %
        # short depth cost almost nothing
        loss=LossConfig(dynamic_threshold=2.0, flow=0.05, flow_aux=0.05, lidar=1.0, silog_variance_focus=0.0),
        stage1=StageConfig(steps=200, optim=OptimConfig(lr=2e-3, warmup_steps=20, milestones=(0.8,),
                                                        lr_mult={"encoder.backbone": 0.5, "deviation": 0.0})),
        # stage 2 at a fifth of stage 1's rate (the flow head x5): at 1e-3 it lifted the road by 0.35 m
        stage2=StageConfig(steps=100, optim=OptimConfig(
            lr=2e-4, warmup_steps=10, milestones=(0.6, 0.8), gamma=0.4,
            lr_mult={"encoder": 0.25, "encoder.backbone": 0.1, "fusion": 0.4, "flow_head": 5.0})),
        # the released 5,000-step cos-anneal: a 200-step run stays near its start (ratio 0.04), where
        # grazing road rays get a sharp enough opacity
        cos_anneal_steps=5000,
        save_every=100,
        output_dir=Path("runs/synthetic"),
    )
    paper_stage1 = StageConfig(steps=10 * 28130, optim=OptimConfig(
        lr=1e-4, warmup_steps=1000, milestones=(0.8,), gamma=0.2, lr_mult={"encoder.backbone": 0.1}))
    paper_stage2 = StageConfig(steps=16 * 28130, optim=OptimConfig(
        lr=1e-4, warmup_steps=1000, milestones=(0.6, 0.8), gamma=0.4,
        lr_mult={"encoder": 0.25, "encoder.backbone": 0.025, "fusion": 0.4}))
    nuscenes = TrainConfig(
        data=DataConfig(dataset="nuscenes", version="v1.0-trainval", train_split="train", val_split="val",
                        sequence=od.SequenceConfig(history=2, lidar_depth=True)),
        model=MODEL_PRESETS["nuscenes"], stage1=paper_stage1, stage2=paper_stage2, cos_anneal_steps=5000,
        output_dir=Path("runs/nuscenes"), save_every=2000)
    kitti_render = RenderConfig(rays_per_camera=(44, 152), lidar_rays=4096)
    kitti_seq = od.SequenceConfig(history=2, image=od.IMAGE_KITTI, lidar_depth=True)
    kitti_odometry = TrainConfig(
        data=DataConfig(dataset="kitti-odometry", train_split="train", val_split="val", sequence=kitti_seq,
                        cues=("flow", "mask")),
        model=MODEL_PRESETS["kitti"], render=kitti_render, stage1=paper_stage1, stage2=paper_stage2,
        cos_anneal_steps=5000,
        output_dir=Path("runs/kitti-odometry"), save_every=2000)
    kitti_mot = replace(kitti_odometry, data=replace(kitti_odometry.data, dataset="kitti-mot",
                                                     train_split="all", val_split="all"),
                        output_dir=Path("runs/kitti-mot"))
    return {"synthetic": synthetic, "nuscenes": nuscenes, "kitti-odometry": kitti_odometry,
            "kitti-mot": kitti_mot}


#: Named training configurations: ``synthetic`` (default: the built-in world on a laptop CPU,
#: both stages in minutes), ``nuscenes`` (paper settings), ``kitti-odometry``, ``kitti-mot``.
PRESETS: dict[str, TrainConfig] = _presets()


# ----------------------------------------------------------------------------------- data
def _split(value: str) -> str | list[str]:
    return [s.strip() for s in value.split(",") if s.strip()] if "," in value else value


def resolve_data(config: DataConfig, *, progress: bool = True) -> tuple[DataConfig, od.SequenceConfig]:
    """Fill in the dataset root, cue cache and Occ3D folder; generate the synthetic world and the
    missing cues if asked. Call on one process first (``main_process_first``).

    Returns:
        The resolved data config and the reader's :class:`occflow_data.SequenceConfig`.
    """
    root = config.root
    if config.dataset == "synthetic":
        if root is None:
            from occflow_data.synth import default_world

            root = default_world(progress=progress)
    elif root is None:
        raise ValueError(f"DataConfig.root is required for dataset {config.dataset!r}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"DataConfig.root: {root} is not a folder")
    seq = config.sequence
    occ_root = config.occ_root
    if config.dataset in ("synthetic", "nuscenes") and occ_root is None and (root / "gts").is_dir():
        occ_root = root
    cue_cache = config.cue_cache or root / "cues"
    cues = tuple(config.cues)
    if cues and config.make_cues:
        make_missing_cues(config.dataset, root, config.version, cue_cache, cues, preset=config.dis_preset,
                          mask_method=config.mask_method, progress=progress)
    seq = replace(seq, cues=cues, cue_cache=str(cue_cache) if cues else None,
                  occ_root=str(occ_root) if occ_root is not None and config.dataset != "kitti-odometry"
                  else seq.occ_root,
                  load_gt=config.dataset == "kitti-odometry" or seq.load_gt)
    return replace(config, root=root, occ_root=occ_root, cue_cache=cue_cache), seq


def make_missing_cues(dataset: str, root: Path, version: str, cache: Path, cues: tuple[str, ...],
                      *, preset: str = "medium", mask_method: str = "geometric",
                      progress: bool = True) -> None:
    """Generate the cues the reader will load (skips files already complete and valid)."""
    from pseudolabels._pipeline import CueConfig, DatasetConfig, make_cues

    name = {"synthetic": "nuscenes", "kitti-mot": "kitti-tracking"}.get(dataset, dataset)
    ds = DatasetConfig(name=name, root=str(root), version=version)
    for cue in cues:
        cfg = CueConfig(cue=cue, preset=preset, mask_flow="track" if "track" in cues else "flow",
                        mask_method=mask_method)
        make_cues(ds, cfg, cache, workers=1, progress=progress)


def open_dataset(config: DataConfig, seq: od.SequenceConfig, split: str, *, train: bool):
    """The reader for ``split`` (a torch Dataset of :class:`occflow_data.Sample`)."""
    if not train:   # evaluate every keyframe: pad scene starts; no supervision frames or cues needed
        seq = replace(seq, aux_prev=False, next_frame=False, scene_start="pad", cues=(), cue_cache=None)
    with contextlib.redirect_stdout(io.StringIO()) if not train else contextlib.nullcontext():
        if config.dataset in ("synthetic", "nuscenes"):
            return od.NuScenesSequences(config.root, _split(split), seq, version=config.version,
                                        verbose=train)
        if config.dataset == "kitti-odometry":
            return od.SemanticKittiSequences(config.root, _split(split), seq, verbose=train)
        return od.KittiTrackingSequences(config.root, _split(split), seq, verbose=train)


# ----------------------------------------------------------------------------------- helpers
def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """A dataclass tree as a flat {dotted.name: scalar or str} dict (for TensorBoard hparams)."""
    out: dict[str, Any] = {}
    if is_dataclass(obj) and not isinstance(obj, type):
        for f in fields(obj):
            out.update(_flat(getattr(obj, f.name), f"{prefix}{f.name}."))
        return out
    value = obj if isinstance(obj, (int, float, str, bool)) else str(obj)
    out[prefix[:-1]] = value
    return out


def config_to_json(config: TrainConfig) -> dict:
    """``config`` as JSON-friendly nested dicts (paths and tuples as strings/lists)."""
    return json.loads(json.dumps(asdict(config), default=str))


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The random generator of optimiser step ``step`` on process ``rank`` (resume-safe)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1))
    return g


def cos_anneal(step: int, total: int) -> float | None:
    """NeuS cos-anneal ratio in [0, 1] (linear ramp, as the released code), None when off."""
    if total <= 0:
        return None
    return min(1.0, step / total)


@dataclass
class StageResult:
    """What one stage did.

    Attributes:
        stage: 1 or 2.
        steps: optimiser steps completed (including those before a resume).
        skipped: steps skipped because the loss or a gradient was not finite.
        seconds: wall time of this process in the stage (excluding time before a resume).
        last_losses: mean of each loss term over the last logging window.
    """

    stage: int
    steps: int
    skipped: int = 0
    seconds: float = 0.0
    last_losses: dict[str, float] = field(default_factory=dict)


def build_model(config: TrainConfig) -> OccFlowModel:
    """The model of ``config``; ``grad_checkpointing`` switches on activation recomputation in the
    encoder (backbone stages and TPV layers) and the temporal fusion before they are built."""
    model_cfg = config.model
    if config.grad_checkpointing:
        model_cfg = replace(model_cfg, encoder=replace(model_cfg.encoder, grad_checkpoint=True),
                            fusion=replace(model_cfg.fusion, checkpoint=True))
    return OccFlowModel(model_cfg)


def _set_trainable(model: OccFlowModel, stage: int, optim: OptimConfig) -> None:
    """Stage 1: everything but the flow head, inv_s learnable. Stage 2: all, inv_s frozen.
    In both, parameters with an ``lr_mult`` of 0 are frozen too (:func:`freeze_zero_lr`)."""
    for p in model.parameters():
        p.requires_grad_(True)
    if stage == 1:
        for p in model.flow_head.parameters():
            p.requires_grad_(False)
    else:
        model.deviation.requires_grad_(False)
    freeze_zero_lr(model, optim)


def _load_model_weights(model: OccFlowModel, checkpoint: Path) -> None:
    from safetensors.torch import load_file

    path = Path(checkpoint) / "model.safetensors"
    if not path.is_file():
        raise ValueError(f"init_from: {path} not found (expected a checkpoint folder of occflow_train)")
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"init_from: {path} does not fit the model (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")


# ----------------------------------------------------------------------------------- the loop
def run_stage(accelerator, config: TrainConfig, model: OccFlowModel, dataset, stage: int,
              *, start: Progress | None, global_offset: int, ckpt_root: Path,
              val_set=None) -> StageResult:
    """Train one stage; returns what happened. ``start`` resumes inside the stage; ``val_set`` is
    the validation reader used by ``config.eval.every`` (opened by :func:`train`)."""
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    stage_cfg = config.stage1 if stage == 1 else config.stage2
    total = stage_cfg.steps
    done = start.step if start is not None else 0
    result = StageResult(stage=stage, steps=done)
    if done >= total:
        return result
    set_seed(config.seed + stage)
    _set_trainable(model, stage, stage_cfg.optim)
    optimizer = make_optimizer(model, stage_cfg.optim)
    scheduler = make_scheduler(optimizer, total, stage_cfg.optim)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True,
                        collate_fn=od.collate_samples, num_workers=config.data.num_workers,
                        generator=torch.Generator().manual_seed(config.seed + stage))
    if len(loader) == 0:
        raise ValueError(f"the training split has {len(dataset)} samples, fewer than batch_size="
                         f"{config.batch_size} x processes")
    prepared, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if start is not None:
        from ._checkpoint import load_checkpoint

        load_checkpoint(accelerator, ckpt_root / f"step-{start.global_step:08d}")
    micro_per_epoch = len(loader)
    steps_per_epoch = max(1, micro_per_epoch // config.grad_accum)
    unwrapped = accelerator.unwrap_model(prepared)
    device = accelerator.device
    bar = tqdm(total=total, initial=done, desc=f"stage {stage}", disable=not (config.progress and
               accelerator.is_main_process), dynamic_ncols=True)
    window: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    samples_seen = 0
    step = done
    while step < total:
        epoch = step // steps_per_epoch
        dataset.set_epoch(epoch)
        loader.set_epoch(epoch)
        skip_micro = (step % steps_per_epoch) * config.grad_accum
        epoch_loader = accelerator.skip_first_batches(loader, skip_micro) if skip_micro else loader
        micro = 0
        for batch in epoch_loader:
            # keyed by (optimiser step, micro-step within it): independent of where the loop resumed
            key = (global_offset + step) * config.grad_accum + micro % config.grad_accum
            gen = step_generator(config.seed, key, accelerator.process_index, device)
            ratio = cos_anneal(global_offset + step, config.cos_anneal_steps) if stage == 1 \
                else config.final_cos_anneal_ratio()
            with accelerator.accumulate(prepared), accelerator.autocast():
                field_ = prepared(batch)
                if config.supervision == "occupancy":
                    losses = occupancy_losses(field_, batch, stage, config.occupancy_loss,
                                              step_seconds=STEP_SECONDS.get(config.data.dataset, 0.5))
                else:
                    losses = compute_losses(field_, batch, stage, config.loss, config.render,
                                            inv_s=field_.inv_s, generator=gen, cos_anneal_ratio=ratio)
                total_loss = losses["total"]
                finite = torch.isfinite(total_loss.detach()).float().reshape(1)
                all_finite = bool(accelerator.reduce(finite, reduction="sum").item()
                                  == accelerator.num_processes)
                if all_finite:
                    accelerator.backward(total_loss)
                else:
                    # Skip the step everywhere; keep DDP's collective pattern with a zero loss.
                    accelerator.backward(0.0 * sum(p.sum() for p in prepared.parameters() if p.requires_grad))
                grad_ok = True
                if accelerator.sync_gradients:
                    clip = stage_cfg.optim.grad_clip
                    norm = accelerator.clip_grad_norm_(prepared.parameters(), clip if clip > 0 else math.inf)
                    grad_ok = bool(torch.isfinite(torch.as_tensor(norm)).item())
                if all_finite and grad_ok:
                    optimizer.step()
                    scheduler.step()
                elif accelerator.sync_gradients:
                    result.skipped += 1
                    accelerator.print(f"[occflow_train] stage {stage} step {step}: non-finite "
                                      f"{'loss' if not all_finite else 'gradient'}; step skipped")
                optimizer.zero_grad(set_to_none=True)
            samples_seen += config.batch_size * accelerator.num_processes
            for k, v in losses.items():
                window.setdefault(k, []).append(float(v.detach()))
            micro += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            rate = samples_seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix({"loss": f"{window['total'][-1]:.3f}", "samples/s": f"{rate:.2f}"})
            if step % config.log_every == 0 or step == total:
                means = {k: sum(v) / len(v) for k, v in window.items()}
                result.last_losses = means
                logs = {f"stage{stage}/{k}": v for k, v in means.items()}
                logs[f"stage{stage}/lr"] = scheduler.get_last_lr()[0]
                logs[f"stage{stage}/inv_s"] = float(unwrapped.inv_s().detach())
                logs[f"stage{stage}/samples_per_s"] = rate
                accelerator.log(logs, step=global_offset + step)
                window = {}
            if step % config.save_every == 0 or step == total:
                save_checkpoint(accelerator, ckpt_root,
                                Progress(stage=stage, step=step, global_step=global_offset + step,
                                         finished=step == total),
                                config.keep_last, extra={"config": config_to_json(config)})
            if config.eval.every and step % config.eval.every == 0 and step < total:
                from ._evaluate import evaluate_model

                metrics = evaluate_model(accelerator, unwrapped, config, progress=False, dataset=val_set)
                accelerator.log({f"eval/{k}": v for k, v in metrics.flat().items()},
                                step=global_offset + step)
            if step >= total:
                break
    bar.close()
    result.steps = step
    result.seconds = time.perf_counter() - t0
    sync_buffers(accelerator, unwrapped)
    check_ranks_in_sync(accelerator, unwrapped)
    accelerator.free_memory()
    return result


def sync_buffers(accelerator, model: torch.nn.Module) -> None:
    """Copy every buffer (e.g. BatchNorm running statistics) from process 0 to all processes.

    DDP broadcasts buffers at the start of each forward pass only, so after the last step each
    process holds the statistics of its own last batch; the checkpoint holds process 0's. Without
    this, processes would evaluate slightly different models.
    """
    if accelerator.num_processes == 1:
        return
    import torch.distributed as dist

    for buf in model.buffers():
        dist.broadcast(buf.data, src=0)


def check_ranks_in_sync(accelerator, model: torch.nn.Module) -> None:
    """Raise if any process holds different parameters or buffers than process 0 (a data-parallel bug).

    Compares one float64 checksum per tensor across processes; a no-op with one process.
    """
    if accelerator.num_processes == 1:
        return
    named = [*model.named_parameters(), *model.named_buffers()]
    sums = torch.stack([t.detach().double().sum() for _, t in named]).to(accelerator.device)
    gathered = accelerator.gather(sums[None])                      # [processes, tensors]
    bad = (gathered != gathered[:1]).any(dim=0)
    if bool(bad.any()):
        names = [n for (n, _), b in zip(named, bad.tolist(), strict=True) if b]
        raise RuntimeError(f"parameters or buffers differ across processes after training: {names[:5]}")
    accelerator.print(f"[occflow_train] parameters identical on all {accelerator.num_processes} processes "
                      f"(buffers too)")


def train(config: TrainConfig, accelerator=None) -> dict[str, Any]:
    """Run the configured stages, then evaluate and draw pictures.

    Args:
        config: the run.
        accelerator: an ``accelerate.Accelerator``; one is made from ``config`` when None.

    Returns:
        ``{"stages": [StageResult...], "metrics": EvalResult or None, "output_dir": Path}``.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration

    out = Path(config.output_dir)
    if accelerator is None:
        accelerator = Accelerator(
            gradient_accumulation_steps=config.grad_accum,
            mixed_precision=config.mixed_precision,
            log_with="tensorboard",
            project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
    ckpt_root = out / "checkpoints"
    data_in = config.data
    if config.supervision == "occupancy":   # trained from the 3-D labels: no 2-D cues to load or make
        data_in = replace(data_in, cues=())
    with accelerator.main_process_first():
        data_cfg, seq = resolve_data(data_in, progress=config.progress and accelerator.is_main_process)
    config = replace(config, data=data_cfg)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config_to_json(config), indent=2))
    with contextlib.suppress(Exception):  # trackers are optional (tensorboard missing is fine)
        accelerator.init_trackers("occflow", config={k: v for k, v in _flat(config).items()})
    train_set = open_dataset(data_cfg, seq, data_cfg.train_split, train=True)
    val_set = open_dataset(data_cfg, seq, data_cfg.val_split, train=False)

    torch.manual_seed(config.seed)
    model = build_model(config)
    latest = latest_checkpoint(ckpt_root) if config.resume else None
    resume_at = read_progress(latest) if latest is not None else None
    if config.resume and latest is None:
        accelerator.print(f"[occflow_train] resume: no checkpoint in {ckpt_root}; starting fresh")

    results: list[StageResult] = []
    offset = 0
    for stage in config.stages():
        start = None
        if resume_at is not None:
            if resume_at.stage > stage:      # this stage finished before the interruption
                st = (config.stage1 if stage == 1 else config.stage2).steps
                results.append(StageResult(stage=stage, steps=st))
                offset += st
                continue
            if resume_at.stage == stage:
                start = resume_at
        if stage == 2 and start is None:
            source = None
            if config.stage == "2":
                source = config.init_from
            elif 1 in config.stages() and config.stage1.steps > 0:
                source = ckpt_root / f"step-{offset:08d}"
                if not source.is_dir():
                    source = latest_checkpoint(ckpt_root)
            if source is not None:
                _load_model_weights(model, Path(source))
        results.append(run_stage(accelerator, config, model, train_set, stage, start=start,
                                 global_offset=offset, ckpt_root=ckpt_root, val_set=val_set))
        offset += (config.stage1 if stage == 1 else config.stage2).steps
        resume_at = None

    from ._evaluate import evaluate_model, write_pictures

    metrics = evaluate_model(accelerator, model, config, progress=config.progress, dataset=val_set)
    if accelerator.is_main_process:
        (out / "metrics.json").write_text(json.dumps(metrics.as_dict(), indent=2))
        accelerator.print(metrics.table())
        if config.eval.pictures:
            paths = write_pictures(model, config, out / "pictures", count=config.eval.pictures,
                                   dataset=val_set)
            accelerator.print(f"[occflow_train] pictures: {', '.join(str(p) for p in paths)}")
    accelerator.log({f"eval/{k}": v for k, v in metrics.flat().items()}, step=offset)
    accelerator.end_training()
    return {"stages": results, "metrics": metrics, "output_dir": out}


