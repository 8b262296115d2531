import dataclasses

import huggingface_hub.constants
import pytest
import skimage.data
import timm
import torch
import torch.nn.functional as F
from torch import nn

from tpv_encoder import (
    PACKAGED_IMAGENET_WEIGHTS,
    PRESETS,
    ImageBackbone,
    TPVEncoder,
    TPVEncoderConfig,
    imagenet_state_dict,
    load_backbone_checkpoint,
)
from tpv_encoder._backbone import _full_model_names
from tpv_encoder._pretrained import map_state_by_layout

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def _photo(image) -> torch.Tensor:
    """HxWx3 uint8 -> [1, 3, 224, 224], ImageNet-normalised (what TPVEncoder does to its inputs)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    return (x - IMAGENET_MEAN) / IMAGENET_STD


def _counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


@pytest.mark.parametrize("name", LITES)
def test_packaged_imagenet_weights_classify_photos(name):
    model = timm.create_model(name, pretrained=False).eval()
    model.load_state_dict(imagenet_state_dict(name))  # strict; torch's BatchNorm fills absent counters
    with torch.no_grad():
        logits = model(torch.cat([_photo(skimage.data.chelsea()), _photo(skimage.data.coffee())]))
    top = logits.topk(5, dim=1).indices.tolist()
    assert top[0][0] in CATS, f"chelsea top-5 {top[0]}"
    assert top[1][0] == ESPRESSO, f"coffee top-5 {top[1]}"


@pytest.mark.parametrize("name", LITES)
def test_mapped_state_fits_timm_and_fills_the_features_backbone(name):
    state = imagenet_state_dict(name)
    full = timm.create_model(name, pretrained=False).state_dict()
    assert list(state) == [k for k in full if not _counter(k)]
    assert all(state[k].shape == full[k].shape and state[k].dtype == full[k].dtype for k in state)
    bb = ImageBackbone(name, (2, 3, 4), 16, 4, weights="imagenet")
    assert bb.strides == (8, 16, 32)
    body = bb.body.state_dict()
    compared = 0
    for key, value in body.items():
        if not _counter(key):
            torch.testing.assert_close(value, state[key], rtol=0, atol=0)
            compared += 1
    assert compared > 200
    assert "classifier.weight" not in body


def test_encoder_config_builds_an_imagenet_backbone():
    cfg = dataclasses.replace(PRESETS["tiny"], backbone="efficientnet_lite0", backbone_out_indices=(2, 3, 4),
                              backbone_weights="imagenet")
    enc = TPVEncoder(cfg)
    ref = imagenet_state_dict("efficientnet_lite0")
    torch.testing.assert_close(enc.backbone.body.state_dict()["blocks.2.1.conv_pw.weight"],
                               ref["blocks.2.1.conv_pw.weight"], rtol=0, atol=0)
    assert enc.backbone.body.feature_info.channels() == [40, 112, 320]


def test_layout_mapping_checks_every_pair():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    good = {"_conv_stem.weight": torch.randn(4, 3, 3, 3), "_conv_stem.bias": torch.randn(4),
            "_bn0.weight": torch.rand(4), "_bn0.bias": torch.randn(4), "_bn0.running_mean": torch.randn(4),
            "_bn0.running_var": torch.rand(4), "_bn0.num_batches_tracked": torch.tensor(0),
            "_fc.weight": torch.randn(2, 4), "_fc.bias": torch.randn(2)}
    mapped = map_state_by_layout(good, model, "test weights")
    assert list(mapped) == [k for k in model.state_dict() if not _counter(k)]
    torch.testing.assert_close(mapped["1.running_var"], good["_bn0.running_var"])

    order = [*list(good)[:4], "_bn0.running_var", "_bn0.running_mean", *list(good)[6:]]
    swapped = {k: good[k] for k in order}  # running_var stored before running_mean: same shapes
    with pytest.raises(ValueError, match=r"tensor 4 '_bn0.running_var' .* '1.running_mean'"):
        map_state_by_layout(swapped, model, "test weights")

    wrong_kind = {("_bn9.bias" if k == "_conv_stem.bias" else k): v for k, v in good.items()}
    first = r"tensor 1 '_bn9.bias' \(norm, \(4,\)\) would map to '0.bias' \(conv, \(4,\)\)"
    with pytest.raises(ValueError, match=first):
        map_state_by_layout(wrong_kind, model, "test weights")

    wrong_shape = good | {"_fc.weight": torch.randn(3, 4)}
    with pytest.raises(ValueError, match=r"'_fc.weight' \(linear, \(3, 4\)\) would map to '2.weight'"):
        map_state_by_layout(wrong_shape, model, "test weights")

    with pytest.raises(ValueError, match="7 tensors"):
        map_state_by_layout({k: v for k, v in good.items() if k != "_fc.bias"}, model, "test weights")


def test_bad_weight_options(tmp_path, monkeypatch):
    assert set(PACKAGED_IMAGENET_WEIGHTS) == set(LITES)
    with pytest.raises(ValueError, match="weights must be None or one of"):
        ImageBackbone("efficientnet_lite0", (2, 3, 4), 8, 3, weights="imagenet21k")
    with pytest.raises(ValueError, match="not both"):
        ImageBackbone("efficientnet_lite0", (2, 3, 4), 8, 3, checkpoint=tmp_path / "x.pth",
                      weights="imagenet")
    with pytest.raises(ValueError, match="backbone_weights must be None or one of"):
        TPVEncoderConfig(backbone_weights="ImageNet")
    with pytest.raises(ValueError, match="not both"):
        TPVEncoderConfig(backbone_weights="imagenet", backbone_checkpoint="convnext_base.pth")
    with pytest.raises(ValueError, match="timm model name"):
        imagenet_state_dict("no_such_model_xyz")

    # A model without packaged weights goes to timm's hub loader; offline (as here) it must fail
    # with a clear message. huggingface_hub reads HF_HUB_OFFLINE when it is imported, so its
    # constant is set too (and an empty cache), to fail at once instead of after network retries.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ValueError, match=r"'resnet10t'.*pass a local file through backbone_checkpoint"):
        ImageBackbone("resnet10t", (1, 2, 3), 8, 3, weights="imagenet")
    with pytest.raises(ValueError, match=r"'resnet10t'.*backbone_checkpoint"):
        imagenet_state_dict("resnet10t")


def test_checkpoint_without_batch_counters_loads(tmp_path):
    torch.manual_seed(4)
    full = timm.create_model("resnet10t", pretrained=False)
    for m in full.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
    state = {k: v for k, v in full.state_dict().items() if not _counter(k)}
    path = tmp_path / "no_counters.pth"
    torch.save(state, path)
    body = timm.create_model("resnet10t", pretrained=False, features_only=True, out_indices=(1, 2, 3))
    assert any(_counter(k) for k in body.state_dict())
    load_backbone_checkpoint(body, path)
    key = "layer2.0.bn1.running_mean"
    torch.testing.assert_close(body.state_dict()[key], state[key])
    state.pop("layer2.0.bn1.running_var")  # any other missing buffer is still an error
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 missing keys \['layer2.0.bn1.running_var'\]"):
        load_backbone_checkpoint(body, path)


def test_features_only_names_map_to_full_model_names():
    assert "stages.0.blocks.1.weight" in _full_model_names("stages_0.blocks.1.weight")
    assert "down_stages.2.conv.weight" in _full_model_names("down_stages_2.conv.weight")
    assert _full_model_names("conv_stem.weight")[0] == "conv_stem.weight"
