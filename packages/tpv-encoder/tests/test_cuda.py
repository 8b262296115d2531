"""CUDA checks (run with ``pytest -m cuda``; skipped without a GPU)."""

import dataclasses
import math

import pytest
import torch

from tpv_encoder import PRESETS, TPVEncoder, ms_deform_attn
from tpv_encoder._reference import ms_deform_attn_reference

pytestmark = pytest.mark.cuda


def test_ms_deform_attn_cuda_matches_reference():
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[6, 5], [3, 2]])
    value = torch.randn(1, 36, 2, 3, generator=gen, dtype=torch.float64)
    loc = torch.rand(1, 4, 2, 2, 3, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2
    w = torch.rand(1, 4, 2, 2, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(1, 4, 6, generator=gen, dtype=torch.float64)
    ref_args = [t.clone().requires_grad_(True) for t in (value, loc, w)]
    (ms_deform_attn_reference(ref_args[0], shapes, ref_args[1], ref_args[2]) * g).sum().backward()
    args = [t.cuda().requires_grad_(True) for t in (value, loc, w)]
    out = ms_deform_attn(args[0], shapes, args[1], args[2])
    (out * g.cuda()).sum().backward()
    torch.testing.assert_close(out.cpu(), ms_deform_attn_reference(value, shapes, loc, w))
    for a, r in zip(args, ref_args, strict=True):
        torch.testing.assert_close(a.grad.cpu(), r.grad)


def test_encoder_cuda_matches_cpu():
    cfg = dataclasses.replace(PRESETS["tiny"], cells=(20, 20, 4), image_size=(64, 96))
    torch.manual_seed(0)
    enc = TPVEncoder(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(2, 2, 3, 64, 96, generator=gen)
    f = 48 / math.tan(math.radians(40))
    K = torch.tensor([[f, 0.0, 47.5], [0.0, f, 31.5], [0.0, 0.0, 1.0]]).expand(2, 2, 3, 3)
    T = torch.eye(4).repeat(2, 2, 1, 1)
    T[:, :, :3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # looks along +x
    T[:, 1, :3, :3] = T[:, 1, :3, :3] * torch.tensor([-1.0, 1.0, -1.0])  # second camera looks along -x
    with torch.no_grad():
        cpu = enc(images, K, T)
        gpu = enc.cuda()(images.cuda(), K.cuda(), T.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)


def test_encoder_trains_under_bf16_autocast():
    cfg = dataclasses.replace(PRESETS["tiny"], cells=(20, 20, 4), image_size=(64, 96))
    torch.manual_seed(0)
    enc = TPVEncoder(cfg).cuda().train()
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(1, 2, 3, 64, 96, generator=gen).cuda()
    f = 48 / math.tan(math.radians(40))
    K = torch.tensor([[f, 0.0, 47.5], [0.0, f, 31.5], [0.0, 0.0, 1.0]]).expand(1, 2, 3, 3).cuda()
    T = torch.eye(4).repeat(1, 2, 1, 1)
    T[:, :, :3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    T[:, 1, :3, :3] = T[:, 1, :3, :3] * torch.tensor([-1.0, 1.0, -1.0])
    with torch.autocast("cuda", dtype=torch.bfloat16):
        vol = enc(images, K, T.cuda())
    vol.float().square().mean().backward()
    assert torch.isfinite(vol.float()).all()
    grads = [p.grad for p in enc.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
