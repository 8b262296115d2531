"""``python -m occflow_train.predict --checkpoint CKPT [--data ROOT] [--out DIR]``: predictions and pictures.

For every sample of a split it writes ``<out>/<sample_token>.npz`` with

- ``semantics``: ``[X, Y, Z]`` uint8 on the ground-truth grid (Occ3D 200 x 200 x 16 on nuScenes):
  0 where the predicted SDF at the voxel centre is <= 0.1 m (class-agnostic occupancy; score it
  with ``--variant geo``), 17 (free) elsewhere, the 6-voxel x/y border free;
- ``flow``: ``[X, Y, Z, 2]`` float32 predicted horizontal velocity in the ego frame, m/s,

which is the layout ``python -m occflow_metrics --gt ROOT --pred OUT --variant geo`` scores, and
``<out>/pictures/frame_XXX.png`` for the first ``--pictures`` samples.

``--checkpoint`` is a checkpoint folder (``<run>/checkpoints/step-XXXXXXXX``) or a run folder
(its newest complete checkpoint is used); the training configuration stored in the checkpoint
rebuilds the model and the reader.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch

import occflow_data as od

from ._checkpoint import PROGRESS_FILE, latest_checkpoint, read_progress
from ._eval_utils import STEP_SECONDS
from ._evaluate import predict_grids, write_pictures
from ._train import TrainConfig, open_dataset, resolve_data


def _convert(value: Any, hint: Any) -> Any:
    """JSON value -> the annotated type (dataclasses, tuples, paths, optionals, mappings)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        for a in args:
            try:
                return _convert(value, a)
            except (TypeError, ValueError):
                continue
        return value
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0]) for v in value)
        return tuple(_convert(v, a) for v, a in zip(value, args, strict=True))
    if hint is Path:
        return Path(value)
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        return dict(value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def config_from_dict(cls: type, data: dict) -> Any:
    """Rebuild a (nested, frozen) config dataclass from the JSON written by the trainer."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _convert(data[f.name], hints[f.name])
              for f in dataclasses.fields(cls) if f.init and f.name in data}
    return cls(**kwargs)


def load_run(checkpoint: str | Path) -> tuple[Path, TrainConfig]:
    """The checkpoint folder to load and the :class:`TrainConfig` it was trained with."""
    import json

    path = Path(checkpoint)
    if not path.exists():
        raise ValueError(f"--checkpoint: {path} does not exist")
    if not (path / PROGRESS_FILE).is_file():
        found = latest_checkpoint(path / "checkpoints") if (path / "checkpoints").is_dir() else None
        if found is None:
            raise ValueError(f"--checkpoint: {path} is neither a checkpoint folder (with {PROGRESS_FILE}) "
                             f"nor a run folder with complete checkpoints in checkpoints/")
        path = found
    read_progress(path)  # validates
    extra = json.loads((path / PROGRESS_FILE).read_text()).get("extra", {})
    if "config" not in extra:
        raise ValueError(f"--checkpoint: {path / PROGRESS_FILE} holds no training configuration")
    return path, config_from_dict(TrainConfig, extra["config"])


def load_model(checkpoint: Path, config: TrainConfig, device: str = "cpu"):
    """The :class:`OccFlowModel` of ``config`` with the weights of ``checkpoint``, in eval mode."""
    from ._model import OccFlowModel
    from ._train import _load_model_weights

    model = OccFlowModel(config.model)
    _load_model_weights(model, checkpoint)
    return model.to(device).eval()


@torch.no_grad()
def predict(checkpoint: str | Path, out: str | Path, *, data_root: str | Path | None = None,
            split: str | None = None, pictures: int = 4, max_samples: int = 0, device: str = "cpu",
            progress: bool = True) -> list[Path]:
    """Write predictions (and pictures) for every sample of ``split``; returns the written files."""
    from tqdm.auto import tqdm

    ckpt, config = load_run(checkpoint)
    if data_root is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(
            config.data, root=Path(data_root), occ_root=None, cue_cache=None, make_cues=False))
    data_cfg, seq = resolve_data(dataclasses.replace(config.data, make_cues=False), progress=progress)
    config = dataclasses.replace(config, data=data_cfg)
    dataset = open_dataset(data_cfg, seq, split or data_cfg.val_split, train=False)
    model = load_model(ckpt, config, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(dataset) if not max_samples else min(max_samples, len(dataset))
    written = []
    step = STEP_SECONDS.get(config.data.dataset, 0.5)
    for i in tqdm(range(n), desc="predict", disable=not progress, dynamic_ncols=True):
        sample = dataset[i]
        grid = sample.gt.grid if sample.gt is not None else _default_grid(config)
        labels, velocity, _ = predict_grids(model, od.collate_samples([sample]).to(device), grid, step)
        path = out / f"{dataset.sample_key(i)}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, semantics=labels[0].cpu().numpy().astype(np.uint8),
                            flow=velocity[0].cpu().numpy().astype(np.float32))
        tmp.replace(path)
        written.append(path)
    if pictures:
        written += write_pictures(model, config, out / "pictures", count=min(pictures, n), dataset=dataset)
    return written


def _default_grid(config: TrainConfig):
    import volrender

    return volrender.SEMANTIC_KITTI if config.data.dataset.startswith("kitti") else volrender.OCC3D_NUSCENES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m occflow_train.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder or run folder")
    parser.add_argument("--data", default=None, help="dataset root (default: the one the run trained on)")
    parser.add_argument("--split", default=None, help="split to predict (default: the run's validation one)")
    parser.add_argument("--out", default=None, help="output folder (default: <run>/predictions)")
    parser.add_argument("--pictures", type=int, default=4, help="pictures of the first N samples (0 = none)")
    parser.add_argument("--max-samples", type=int, default=0, help="predict at most N samples (0 = all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        ckpt, _ = load_run(args.checkpoint)
        out = Path(args.out) if args.out else ckpt.parent.parent / "predictions"
        files = predict(ckpt, out, data_root=args.data, split=args.split, pictures=args.pictures,
                        max_samples=args.max_samples, device=args.device)
    except ValueError as err:
        print(f"occflow_train.predict: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {sum(f.suffix == '.npz' for f in files)} predictions and "
          f"{sum(f.suffix == '.png' for f in files)} pictures to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
