import pytest
import timm
import torch

from tpv_encoder import FPN, ImageBackbone, load_backbone_checkpoint


def test_backbone_and_fpn_shapes():
    torch.manual_seed(0)
    bb = ImageBackbone("convnext_atto", (1, 2, 3), 16, 4)
    gen = torch.Generator().manual_seed(0)
    feats = bb(torch.rand(2, 3, 64, 128, generator=gen))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 8, 16), (2, 16, 4, 8), (2, 16, 2, 4), (2, 16, 1, 2)]
    assert bb.strides == (8, 16, 32)


def test_fpn_top_down_path_reaches_fine_levels():
    torch.manual_seed(1)
    fpn = FPN([4, 8], 6, 2)
    gen = torch.Generator().manual_seed(1)
    fine, coarse = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 8, 4, 4, generator=gen)
    a = fpn([fine, coarse])
    b = fpn([fine, coarse + 1.0])
    assert (a[0] - b[0]).abs().max() > 1e-4  # the coarse level feeds the fine output
    with pytest.raises(ValueError, match="num_outs"):
        FPN([4, 8], 6, 1)


def test_checkpoint_of_the_full_timm_model_loads(tmp_path):
    torch.manual_seed(2)
    full = timm.create_model("convnext_atto", pretrained=False)
    path = tmp_path / "atto.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in full.state_dict().items()}}, path)
    torch.manual_seed(3)
    bb = ImageBackbone("convnext_atto", (1, 2, 3), 8, 3, checkpoint=path)
    torch.testing.assert_close(bb.body.state_dict()["stages_1.blocks.0.conv_dw.weight"],
                               full.state_dict()["stages.1.blocks.0.conv_dw.weight"])
    torch.testing.assert_close(bb.body.state_dict()["stem_0.weight"], full.state_dict()["stem.0.weight"])


def test_checkpoint_errors(tmp_path):
    body = timm.create_model("convnext_atto", pretrained=False, features_only=True, out_indices=(1, 2, 3))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_backbone_checkpoint(body, tmp_path / "missing.pth")
    sd = {k.replace("stages_", "stages.").replace("stem_", "stem."): v for k, v in body.state_dict().items()}
    wrong = tmp_path / "wrong.pth"
    torch.save(sd | {"stages.1.blocks.0.conv_dw.weight": torch.zeros(3, 1, 7, 7)}, wrong)
    with pytest.raises(ValueError, match="1 shape mismatches"):
        load_backbone_checkpoint(body, wrong)
    partial = tmp_path / "partial.pth"
    sd.pop("stages.2.downsample.1.weight")
    torch.save(sd, partial)
    with pytest.raises(ValueError, match="1 missing keys"):
        load_backbone_checkpoint(body, partial)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_backbone_checkpoint(body, junk)


def test_unknown_backbone_name():
    with pytest.raises(ValueError, match="not a timm model"):
        ImageBackbone("no_such_model_xyz", (1, 2, 3), 8, 3)
