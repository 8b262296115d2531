"""The full default world (slow: a few minutes on 2 CPU cores)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.slow
def test_default_world_generates_and_loads(tmp_path):
    from nuscenes.nuscenes import NuScenes

    from occflow_data.synth import MARKER, default_world, default_world_config

    cfg = default_world_config()
    root = default_world(tmp_path, progress=False)
    assert (root / MARKER).is_file()
    nusc = NuScenes("v1.0-mini", str(root), verbose=False)
    assert len(nusc.scene) == cfg.scenes and len(nusc.sample) == cfg.scenes * cfg.keyframes
    ann = json.loads((root / "annotations.json").read_text())
    assert ann["val_split"] and ann["train_split"]
    first = next(iter(ann["scene_infos"][ann["val_split"][0]].values()))
    with np.load(root / first["gt_path"]) as gt:
        assert gt["semantics"].shape == (200, 200, 16) and gt["flow"].shape == (200, 200, 16, 2)
        assert gt["mask_camera"].any() and gt["mask_lidar"].any()
    assert sum(len(s["anns"]) for s in nusc.sample) > 100
