"""Volume <-> BEV maps and the BEV-volume fusion of eq. 6."""

from __future__ import annotations

import pytest
import torch

from temporal_fusion import BEVVolumeFusion, slices_to_volume, volume_to_bev


def _vol(b=2, c=4, shape=(5, 6, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, *shape, generator=g)


def test_slices_plus_global_bev_and_back():
    v = _vol()
    maps = volume_to_bev(v, "slices")
    assert maps.shape == (2, 4, 4, 5, 6)  # Z + 1 = 4 maps
    for k in range(3):
        assert torch.equal(maps[:, k], v[..., k])
    torch.testing.assert_close(maps[:, 3], (v[..., 0] + v[..., 1] + v[..., 2]) / 3)
    back, bev = slices_to_volume(maps)
    assert torch.equal(back, v)
    assert torch.equal(bev, maps[:, 3])
    glob = volume_to_bev(v, "global")
    assert glob.shape == (2, 1, 4, 5, 6)
    torch.testing.assert_close(glob[:, 0], maps[:, 3])


def test_bev_volume_fusion_matches_eq6():
    torch.manual_seed(0)
    fusion = BEVVolumeFusion(4)
    v, bev = _vol(), _vol(shape=(5, 6, 1), seed=1)[..., 0]
    out = fusion(v, bev)
    w = fusion.gate.weight[:, :, 0, 0, 0]
    gate = torch.sigmoid(torch.einsum("oc,bcxyz->boxyz", w, v) + fusion.gate.bias[None, :, None, None, None])
    expected = v + gate * bev[..., None]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)


def test_bad_inputs():
    v = _vol()
    with pytest.raises(ValueError, match="mode must be"):
        volume_to_bev(v, "columns")
    with pytest.raises(ValueError, match=r"volume must be \[B, C, X, Y, Z\]"):
        volume_to_bev(v[0])
    with pytest.raises(ValueError, match="Z >= 1"):
        slices_to_volume(v[:, :1])
    fusion = BEVVolumeFusion(4)
    with pytest.raises(ValueError, match=r"bev must be \[B, C, X, Y\]"):
        fusion(v, v[..., 0, 0])
    with pytest.raises(ValueError, match="4 channels"):
        fusion(v[:, :3], v[:, :3, ..., 0])
    with pytest.raises(ValueError, match="positive int"):
        BEVVolumeFusion(0)
