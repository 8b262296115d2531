"""Checkpoints (atomic save, keep-last-N, resume) and the optimiser/schedule helpers."""

import json

import pytest
import torch
from accelerate import Accelerator
from torch import nn

from occflow_train._checkpoint import (
    Progress,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_progress,
    save_checkpoint,
)
from occflow_train._optim import (
    OptimConfig,
    freeze_zero_lr,
    lr_factor,
    make_optimizer,
    make_scheduler,
    param_groups,
)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.backbone = nn.Linear(4, 4)
        self.encoder.neck = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)
        self.norm = nn.LayerNorm(4)


def _setup(tmp_path):
    torch.manual_seed(0)
    acc = Accelerator(cpu=True, project_dir=str(tmp_path))
    net = _Net()
    cfg = OptimConfig(warmup_steps=2, milestones=(0.5,))
    opt = make_optimizer(net, cfg)
    sched = make_scheduler(opt, 10, cfg)
    net, opt, sched = acc.prepare(net, opt, sched)
    return acc, net, opt, sched


def _step(net, opt, sched):
    loss = net.head(net.encoder.neck(net.encoder.backbone(torch.ones(2, 4)))).pow(2).sum()
    loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def test_save_prune_and_resume(tmp_path):
    acc, net, opt, sched = _setup(tmp_path)
    root = tmp_path / "checkpoints"
    for step in range(1, 5):
        _step(net, opt, sched)
        save_checkpoint(acc, root, Progress(stage=1, step=step, global_step=step), keep_last=2,
                        extra={"note": "test"})
    names = [p.name for p in list_checkpoints(root)]
    assert names == ["step-00000003", "step-00000004"]
    assert read_progress(latest_checkpoint(root)) == Progress(1, 4, 4, False)
    assert json.loads((root / "step-00000004" / "progress.json").read_text())["extra"] == {"note": "test"}
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    lr = [g["lr"] for g in opt.param_groups]

    # Continue, then restore step 4: weights, optimiser and schedule come back exactly.
    _step(net, opt, sched)
    assert not torch.equal(net.head.weight, weights["head.weight"])
    progress = load_checkpoint(acc, root / "step-00000004")
    assert progress.global_step == 4
    for k, v in net.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert [g["lr"] for g in opt.param_groups] == lr


def test_half_written_checkpoint_is_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    (root / ".tmp-step-00000009").mkdir(parents=True)
    (root / "step-00000007").mkdir()          # no progress.json: killed before completion
    assert latest_checkpoint(root) is None
    with pytest.raises(ValueError, match="not a complete occflow_train checkpoint"):
        read_progress(root / "step-00000007")
    acc, net, opt, sched = _setup(tmp_path)
    save_checkpoint(acc, root, Progress(1, 1, 1), keep_last=3)
    assert not (root / ".tmp-step-00000009").exists()
    assert latest_checkpoint(root).name == "step-00000001"


def test_param_groups_multipliers_and_decay():
    net = _Net()
    cfg = OptimConfig(lr=1.0, lr_mult={"encoder": 0.25, "encoder.backbone": 0.1, "norm": 0.0})
    groups = param_groups(net, cfg)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["encoder.backbone.weight"]["lr"] == pytest.approx(0.1)   # longest prefix wins
    assert by_name["encoder.neck.weight"]["lr"] == pytest.approx(0.25)
    assert by_name["head.weight"]["lr"] == pytest.approx(1.0)
    assert by_name["head.bias"]["weight_decay"] == 0.0
    assert by_name["head.weight"]["weight_decay"] == cfg.weight_decay
    assert "norm.weight" not in by_name                                      # multiplier 0: frozen
    net.head.weight.requires_grad_(False)
    assert "head.weight" not in {n for g in param_groups(net, cfg) for n in g["names"]}


def test_zero_multiplier_parameters_get_no_gradient():
    # Left out of the optimiser but still trainable, a parameter's gradient is never zeroed: it
    # would grow step after step inside the clipping norm (a resumed run then clips differently).
    from occflow_train import PRESETS
    from occflow_train._train import _set_trainable, build_model

    cfg = PRESETS["synthetic"]
    assert cfg.stage1.optim.lr_mult["deviation"] == 0.0
    model = build_model(cfg)
    _set_trainable(model, 1, cfg.stage1.optim)
    assert not model.deviation.requires_grad
    assert not any(p.requires_grad for p in model.flow_head.parameters())
    assert all(p.requires_grad for p in model.encoder.backbone.parameters())
    _set_trainable(model, 2, cfg.stage2.optim)
    assert not model.deviation.requires_grad
    assert all(p.requires_grad for p in model.flow_head.parameters())

    net = _Net()
    frozen = freeze_zero_lr(net, OptimConfig(lr_mult={"norm": 0.0, "head": 0.5}))
    assert frozen == ["norm.weight", "norm.bias"]
    assert not net.norm.weight.requires_grad and net.head.weight.requires_grad


def test_lr_factor_warmup_and_milestones():
    cfg = OptimConfig(warmup_steps=4, warmup_ratio=0.2, milestones=(0.6, 0.8), gamma=0.4)
    assert lr_factor(0, 100, cfg) == pytest.approx(0.2)
    assert lr_factor(2, 100, cfg) == pytest.approx(0.6)
    assert lr_factor(4, 100, cfg) == pytest.approx(1.0)
    assert lr_factor(59, 100, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 100, cfg) == pytest.approx(0.4)
    assert lr_factor(80, 100, cfg) == pytest.approx(0.16)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0), "lr must be positive"),
    (dict(milestones=(0.8, 0.6)), "milestones"),
    (dict(warmup_ratio=0), "warmup_ratio"),
    (dict(lr_mult={"x": -1}), "lr_mult"),
])
def test_optim_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimConfig(**kwargs)


def test_keep_last_validated(tmp_path):
    acc, *_ = _setup(tmp_path)
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint(acc, tmp_path / "c", Progress(1, 1, 1), keep_last=0)


def test_grad_checkpointing_reaches_the_built_model():
    from dataclasses import replace

    from occflow_train import PRESETS
    from occflow_train._train import build_model

    plain = build_model(PRESETS["synthetic"])
    ckpt = build_model(replace(PRESETS["synthetic"], grad_checkpointing=True))
    assert not plain.encoder.config.grad_checkpoint and not plain.fusion.config.checkpoint
    assert ckpt.encoder.config.grad_checkpoint and ckpt.fusion.config.checkpoint
    assert ckpt.encoder.backbone.body.grad_checkpointing
    assert not plain.encoder.backbone.body.grad_checkpointing


def test_cos_anneal_ratio_ramps_and_stage2_keeps_where_stage1_ended():
    import dataclasses

    from occflow_train import PRESETS
    from occflow_train._train import cos_anneal

    assert cos_anneal(0, 0) is None and cos_anneal(5, 0) is None
    assert [cos_anneal(s, 4) for s in (0, 1, 4, 9)] == [0.0, 0.25, 1.0, 1.0]
    base = PRESETS["synthetic"]
    long = dataclasses.replace(base, cos_anneal_steps=4 * base.stage1.steps)
    assert long.final_cos_anneal_ratio() == pytest.approx(0.25)
    short = dataclasses.replace(base, cos_anneal_steps=base.stage1.steps // 2)
    assert short.final_cos_anneal_ratio() == 1.0
    assert dataclasses.replace(base, cos_anneal_steps=0).final_cos_anneal_ratio() is None
