"""Writer of the nuScenes v1.0 layout (+ Occ3D/OpenOcc occupancy ground truth and oracle cues)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from volrender import OCC3D_NUSCENES

from .. import __version__
from .._readers import NUSCENES_CAMERAS
from . import _classes as C
from ._geometry import apply, invert_pose, rot_to_quat
from ._gt import annotation_boxes, camera_flow, camera_visibility, lidar_visibility, pixel_masks, voxelize
from ._io import save_image, save_json, save_npz, token
from ._render import CameraFrame, Renderer
from ._rigs import Rig, nuscenes_rig
from ._world import World, WorldConfig, make_world

VERSION = "v1.0-mini"
#: nuScenes' official mini split, in the order scenes are named (train and val alternate early so
#: that two scenes already give both splits).
MINI_SCENES = (
    "scene-0061",
    "scene-0103",
    "scene-0553",
    "scene-0655",
    "scene-0757",
    "scene-0796",
    "scene-0916",
    "scene-1077",
    "scene-1094",
    "scene-1100",
)
MINI_VAL = ("scene-0103", "scene-0916")
KEYFRAME_DT = 0.5
BASE_TIMESTAMP = 1_700_000_000_000_000  # microseconds

CATEGORIES = (
    "noise",
    "animal",
    "human.pedestrian.adult",
    "human.pedestrian.child",
    "human.pedestrian.construction_worker",
    "human.pedestrian.personal_mobility",
    "human.pedestrian.police_officer",
    "human.pedestrian.stroller",
    "human.pedestrian.wheelchair",
    "movable_object.barrier",
    "movable_object.debris",
    "movable_object.pushable_pullable",
    "movable_object.trafficcone",
    "static_object.bicycle_rack",
    "vehicle.bicycle",
    "vehicle.bus.bendy",
    "vehicle.bus.rigid",
    "vehicle.car",
    "vehicle.construction",
    "vehicle.emergency.ambulance",
    "vehicle.emergency.police",
    "vehicle.motorcycle",
    "vehicle.trailer",
    "vehicle.truck",
    "flat.driveable_surface",
    "flat.other",
    "flat.sidewalk",
    "flat.terrain",
    "static.manmade",
    "static.other",
    "static.vegetation",
    "vehicle.ego",
)
ATTRIBUTES = (
    "vehicle.moving",
    "vehicle.stopped",
    "vehicle.parked",
    "cycle.with_rider",
    "cycle.without_rider",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "pedestrian.moving",
)
VISIBILITY = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))
#: Camera order of the written cue files: the readers' order, by construction.
CUE_CAMERAS = NUSCENES_CAMERAS


@dataclass(frozen=True)
class NuScenesConfig:
    """What ``write_nuscenes`` generates.

    Attributes:
        scenes: number of scenes (1..10, named after nuScenes' mini split).
        keyframes: keyframes (samples) per scene, 2 Hz.
        seed: world seed; scene i uses a seed derived from (seed, i).
        height, width: camera image size, pixels.
        camera_sweeps: camera frames between two keyframes (nuScenes: 5, i.e. 12 Hz).
        lidar_sweeps: LiDAR sweeps between two keyframes (nuScenes: 9, i.e. 20 Hz).
        lidar_azimuth_bins: LiDAR rays per beam and revolution.
        gt_cues: also write oracle cues (flow to the next keyframe, movable mask, depth) under
            ``gt_cues/`` in the cue-cache format.
        world: the world knobs.
    """

    scenes: int = 2
    keyframes: int = 10
    seed: int = 0
    height: int = 225
    width: int = 400
    camera_sweeps: int = 5
    lidar_sweeps: int = 9
    lidar_azimuth_bins: int = 1080
    gt_cues: bool = True
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.scenes, int) or not 1 <= self.scenes <= len(MINI_SCENES):
            raise ValueError(
                f"scenes must be an int in [1, {len(MINI_SCENES)}] for the nuScenes layout "
                f"(names of the official mini split), got {self.scenes!r}"
            )
        if not isinstance(self.keyframes, int) or self.keyframes < 2:
            raise ValueError(f"keyframes must be an int >= 2, got {self.keyframes!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        for name in ("camera_sweeps", "lidar_sweeps"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 20:
                raise ValueError(f"{name} must be an int in [0, 20], got {v!r}")


def scene_seed(seed: int, index: int) -> int:
    """The world seed of scene ``index`` of a dataset made with ``seed``."""
    return int(token("scene", seed, index)[:8], 16)


def _pose_record(t: np.ndarray) -> tuple[list, list]:
    return [float(v) for v in t[:3, 3]], [float(v) for v in rot_to_quat(t[:3, :3])]


def _visible_fractions(boxes: list[dict], frame: CameraFrame, rig: Rig, map_to_ego: np.ndarray) -> np.ndarray:
    """For each box, the fraction of 27 points spread over it that some camera sees (depth test)."""
    if not boxes:
        return np.zeros(0)
    g = np.linspace(-0.45, 0.45, 3)
    unit = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    size = np.array([b["size"] for b in boxes])  # [K, 3]
    yaw = np.array([b["yaw"] for b in boxes])
    local = unit[None] * size[:, None]  # [K, 27, 3]
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    pts = np.stack(
        [c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1], local[..., 2]], -1
    )
    pts = apply(map_to_ego, (pts + np.array([b["center"] for b in boxes])[:, None]).reshape(-1, 3))
    seen = np.zeros(len(pts), bool)
    _, h, w = frame.depth.shape
    for i, cam in enumerate(rig.cameras):
        pc = apply(invert_pose(cam.cam_to_ego), pts)
        z = pc[:, 2]
        zs = np.where(z > 0.1, z, 1.0)
        u = np.round(cam.intrinsics[0, 0] * pc[:, 0] / zs + cam.intrinsics[0, 2]).astype(int)
        v = np.round(cam.intrinsics[1, 1] * pc[:, 1] / zs + cam.intrinsics[1, 2]).astype(int)
        ok = (z > 0.1) & (u >= 0) & (v >= 0) & (u < w) & (v < h)
        d = frame.depth[i][np.clip(v, 0, h - 1), np.clip(u, 0, w - 1)]
        seen |= ok & ((d <= 0) | (z <= d + 0.5))
    return seen.reshape(len(boxes), -1).mean(1)


def _map_mask(world: World) -> np.ndarray:
    """Semantic prior (road and sidewalk = 255) at 0.1 m per pixel in the global frame, row 0 = max y."""
    corners = np.array(
        [
            [world.ground.origin[0], world.ground.origin[1]],
            [
                world.ground.origin[0] + world.ground.fine.shape[0] * 0.5,
                world.ground.origin[1] + world.ground.fine.shape[1] * 0.5,
            ],
        ]
    )
    pts = np.array([[x, y, 0.0] for x in corners[:, 0] for y in corners[:, 1]])
    g = apply(world.global_from_map, pts)
    w_px, h_px = int(np.ceil(g[:, 0].max() / 0.1)) + 1, int(np.ceil(g[:, 1].max() / 0.1)) + 1
    mask = np.zeros((h_px, w_px), np.uint8)
    inv = invert_pose(world.global_from_map)
    # Evaluate on 0.5 m blocks (the ground grid resolution) and upsample.
    bx, by = np.arange(0, w_px, 5), np.arange(0, h_px, 5)
    gx, gy = np.meshgrid((bx + 2.5) * 0.1, (h_px - by - 2.5) * 0.1, indexing="xy")
    m = apply(inv, np.stack([gx, gy, np.zeros_like(gx)], -1))
    fine, _ = world.ground.lookup(m[..., 0], m[..., 1])
    block = np.isin(fine, [C.ROAD, C.SIDEWALK]).astype(np.uint8) * 255
    mask[:] = np.repeat(np.repeat(block, 5, 0), 5, 1)[:h_px, :w_px]
    return mask


class _Tables:
    def __init__(self) -> None:
        self.t: dict[str, list] = {
            name: []
            for name in (
                "attribute",
                "calibrated_sensor",
                "category",
                "ego_pose",
                "instance",
                "log",
                "map",
                "sample",
                "sample_annotation",
                "sample_data",
                "scene",
                "sensor",
                "visibility",
            )
        }

    def add(self, table: str, **rec) -> dict:
        self.t[table].append(rec)
        return rec


def write_nuscenes(root: Path, config: NuScenesConfig, device: str = "cpu", progress=None) -> dict:
    """Generate worlds and write them in the nuScenes layout under ``root`` (which must exist and be empty).

    Writes ``<root>/v1.0-mini/*.json`` (13 tables), ``samples/``, ``sweeps/`` (jpg, pcd.bin),
    ``maps/``, Occ3D/OpenOcc ground truth ``gts/<scene>/<sample_token>/labels.npz`` and
    ``annotations.json``, and (if ``config.gt_cues``) oracle cues under ``gt_cues/``.

    Args:
        root: output folder.
        config: what to generate.
        device: Warp device for rendering.
        progress: optional callable ``progress(n)`` called after each keyframe.

    Returns:
        A summary dict (scene names, sample counts, seconds per keyframe).
    """
    import time

    if not isinstance(config, NuScenesConfig):
        raise TypeError(f"config must be a NuScenesConfig, got {type(config).__name__}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be an existing folder, got {root}")
    rig = nuscenes_rig(config.height, config.width, config.lidar_azimuth_bins)
    tb = _Tables()
    for name in CATEGORIES:
        tb.add(
            "category",
            token=token("category", name),
            name=name,
            description=name,
            index=CATEGORIES.index(name),
        )
    for name in ATTRIBUTES:
        tb.add("attribute", token=token("attribute", name), name=name, description=name)
    for tok, level in VISIBILITY:
        tb.add("visibility", token=tok, level=level, description=f"visibility of whole object is {level}")
    channels = [c.name for c in rig.cameras] + [rig.lidar.name]
    for ch in channels:
        tb.add(
            "sensor",
            token=token("sensor", ch),
            channel=ch,
            modality="lidar" if ch == rig.lidar.name else "camera",
        )
        (root / "samples" / ch).mkdir(parents=True, exist_ok=True)
        (root / "sweeps" / ch).mkdir(parents=True, exist_ok=True)
    (root / "maps").mkdir(exist_ok=True)
    if config.gt_cues:
        for cue in ("flow", "mask", "depth"):
            (root / "gt_cues" / cue).mkdir(parents=True, exist_ok=True)
    occ_infos: dict[str, dict] = {}
    names = MINI_SCENES[: config.scenes]
    t_start = time.perf_counter()
    n_key = 0
    for si, scene_name in enumerate(names):
        world = make_world(
            scene_seed(config.seed, si), (config.keyframes - 1) * KEYFRAME_DT + 0.6, config.world
        )
        renderer = Renderer(world, device)
        g = world.global_from_map
        logfile = f"synth-{config.seed}-{si:02d}"
        log_tok = token("log", config.seed, si)
        tb.add(
            "log",
            token=log_tok,
            logfile=logfile,
            vehicle="synth",
            date_captured="2026-01-01",
            location="synthetic-town",
        )
        map_tok = token("map", config.seed, si)
        Image.fromarray(_map_mask(world)).save(root / "maps" / f"{map_tok}.png")
        tb.add(
            "map",
            token=map_tok,
            log_tokens=[log_tok],
            category="semantic_prior",
            filename=f"maps/{map_tok}.png",
        )
        calib = {}
        for cam in rig.cameras:
            tr, q = _pose_record(cam.cam_to_ego)
            calib[cam.name] = tb.add(
                "calibrated_sensor",
                token=token("calib", config.seed, si, cam.name),
                sensor_token=token("sensor", cam.name),
                translation=tr,
                rotation=q,
                camera_intrinsic=cam.intrinsics.tolist(),
            )
        tr, q = _pose_record(rig.lidar.sensor_to_ego)
        calib[rig.lidar.name] = tb.add(
            "calibrated_sensor",
            token=token("calib", config.seed, si, rig.lidar.name),
            sensor_token=token("sensor", rig.lidar.name),
            translation=tr,
            rotation=q,
            camera_intrinsic=[],
        )
        scene_tok = token("scene", config.seed, si)
        sample_toks = [token("sample", config.seed, si, k) for k in range(config.keyframes)]
        ts0 = BASE_TIMESTAMP + si * 3_600_000_000

        def stamp(t: float, ts0=ts0) -> int:
            return ts0 + int(round(t * 1e6))

        for k, tok in enumerate(sample_toks):
            tb.add(
                "sample",
                token=tok,
                timestamp=stamp(k * KEYFRAME_DT),
                prev=sample_toks[k - 1] if k else "",
                next=sample_toks[k + 1] if k + 1 < config.keyframes else "",
                scene_token=scene_tok,
            )
        tb.add(
            "scene",
            token=scene_tok,
            log_token=log_tok,
            nbr_samples=config.keyframes,
            first_sample_token=sample_toks[0],
            last_sample_token=sample_toks[-1],
            name=scene_name,
            description=f"synthetic street world, seed {scene_seed(config.seed, si)}",
        )
        # Timeline of (time, channel group, keyframe index or -1).
        events = []
        for k in range(config.keyframes):
            events.append((k * KEYFRAME_DT, "key", k))
            if k + 1 < config.keyframes:
                for j in range(1, config.camera_sweeps + 1):
                    events.append(((k + j / (config.camera_sweeps + 1)) * KEYFRAME_DT, "cam", k + 1))
                for j in range(1, config.lidar_sweeps + 1):
                    events.append(((k + j / (config.lidar_sweeps + 1)) * KEYFRAME_DT, "lidar", k + 1))
        events.sort(key=lambda e: (e[0], e[1]))
        sd_by_channel: dict[str, list[dict]] = {ch: [] for ch in channels}
        ann_by_instance: dict[int, list[dict]] = {}
        prev_key: tuple | None = None
        infos = occ_infos.setdefault(scene_name, {})
        for t, kind, k in events:
            ego = world.ego_pose(t)
            ego_g = g @ ego
            ts = stamp(t)
            is_key = kind == "key"
            folder = "samples" if is_key else "sweeps"

            def add_sd(
                ch: str,
                filename: str,
                fmt: str,
                width: int,
                height: int,
                is_key=is_key,
                ts=ts,
                ego_g=ego_g,
                k=k,
                si=si,
                sample_toks=sample_toks,
                calib=calib,
                sd_by_channel=sd_by_channel,
            ) -> dict:
                sd_tok = token("sd", config.seed, si, ch, ts)
                tr_, q_ = _pose_record(ego_g)
                tb.add("ego_pose", token=sd_tok, timestamp=ts, rotation=q_, translation=tr_)
                rec = tb.add(
                    "sample_data",
                    token=sd_tok,
                    sample_token=sample_toks[k],
                    ego_pose_token=sd_tok,
                    calibrated_sensor_token=calib[ch]["token"],
                    timestamp=ts,
                    fileformat=fmt,
                    is_key_frame=is_key,
                    height=height,
                    width=width,
                    filename=filename,
                    prev="",
                    next="",
                )
                sd_by_channel[ch].append(rec)
                return rec

            frame = None
            if kind in ("key", "cam"):
                frame = renderer.render_cameras(t, rig.cameras, ego)
                for i, cam in enumerate(rig.cameras):
                    fn = f"{folder}/{cam.name}/{logfile}__{cam.name}__{ts}.jpg"
                    save_image(root / fn, frame.rgb[i])
                    add_sd(cam.name, fn, "jpg", cam.width, cam.height)
            sweep = None
            if kind in ("key", "lidar"):
                sweep = renderer.render_lidar(t, rig.lidar, ego)
                fn = f"{folder}/{rig.lidar.name}/{logfile}__{rig.lidar.name}__{ts}.pcd.bin"
                pts = np.concatenate(
                    [sweep.points, sweep.intensity[:, None], sweep.ring[:, None].astype(np.float32)], 1
                )
                (root / fn).write_bytes(pts.astype(np.float32).tobytes())
                add_sd(rig.lidar.name, fn, "pcd", 0, 0)
            if not is_key:
                continue
            # ---------------------------------------------------------- keyframe ground truth
            stok = sample_toks[k]
            map_to_ego = invert_pose(ego)
            lidar_pts_agent = np.bincount(sweep.agent[sweep.agent >= 0], minlength=len(world.agents))
            boxes = [
                b for b in annotation_boxes(world, t) if np.hypot(*apply(map_to_ego, b["center"])[:2]) <= 60.0
            ]
            for box, vis in zip(boxes, _visible_fractions(boxes, frame, rig, map_to_ego), strict=True):
                a = world.agents[box["agent"]]
                n_pts = int(lidar_pts_agent[box["agent"]])
                if vis == 0.0 and n_pts == 0:
                    continue
                cen_g = apply(g, box["center"])
                yaw_g = box["yaw"] + np.arctan2(g[1, 0], g[0, 0])
                attr = _attribute(a, box, world)
                ann_tok = token("ann", config.seed, si, a.instance, k)
                length, width, height = box["size"]
                rec = tb.add(
                    "sample_annotation",
                    token=ann_tok,
                    sample_token=stok,
                    instance_token=token("instance", config.seed, si, a.instance),
                    visibility_token=VISIBILITY[min(int(np.ceil(max(vis - 0.4, 0) / 0.2)), 3)][0],
                    attribute_tokens=[token("attribute", attr)] if attr else [],
                    translation=[float(v) for v in cen_g],
                    size=[width, length, height],
                    rotation=[float(v) for v in np.array([np.cos(yaw_g / 2), 0, 0, np.sin(yaw_g / 2)])],
                    prev="",
                    next="",
                    num_lidar_pts=n_pts,
                    num_radar_pts=0,
                )
                ann_by_instance.setdefault(a.instance, []).append(rec)
            occ = voxelize(world, t, ego, OCC3D_NUSCENES)
            sem = occ.occ3d(world)
            mask_cam = camera_visibility(frame, rig.cameras, OCC3D_NUSCENES, device=device)
            mask_lidar = lidar_visibility(
                [sweep], rig.lidar, OCC3D_NUSCENES, [invert_pose(rig.lidar.sensor_to_ego)], device=device
            )
            flow3 = occ.flow(world, t, ego)
            gt_rel = f"gts/{scene_name}/{stok}/labels.npz"
            (root / gt_rel).parent.mkdir(parents=True, exist_ok=True)
            save_npz(
                root / gt_rel,
                semantics=sem,
                mask_lidar=mask_lidar.astype(np.uint8),
                mask_camera=mask_cam.astype(np.uint8),
                flow=flow3,
            )
            tr_, q_ = _pose_record(ego_g)
            infos[stok] = {
                "timestamp": ts,
                "ego_pose": {"translation": tr_, "rotation": q_},
                "gt_path": gt_rel,
                "prev": sample_toks[k - 1] if k else "",
                "next": sample_toks[k + 1] if k + 1 < config.keyframes else "",
                "camera_sensor": {
                    cam.name: {
                        "img_path": f"samples/{cam.name}/{logfile}__{cam.name}__{ts}.jpg",
                        "intrinsics": cam.intrinsics.tolist(),
                        "extrinsic": {
                            "translation": _pose_record(cam.cam_to_ego)[0],
                            "rotation": _pose_record(cam.cam_to_ego)[1],
                        },
                        "ego_pose": {"translation": tr_, "rotation": q_},
                    }
                    for cam in rig.cameras
                },
            }
            if config.gt_cues:
                if prev_key is not None:
                    _write_cues(root, world, rig, *prev_key, frame)
                prev_key = (sample_toks[k], frame)
            n_key += 1
            if progress is not None:
                progress(1)
        if config.gt_cues and prev_key is not None:
            _write_cues(root, world, rig, *prev_key, None)
        for recs in list(sd_by_channel.values()) + list(ann_by_instance.values()):
            for a, b in zip(recs[:-1], recs[1:], strict=True):
                a["next"], b["prev"] = b["token"], a["token"]
        for inst, recs in ann_by_instance.items():
            kind = world.agents[inst - 1].kind
            tb.add(
                "instance",
                token=token("instance", config.seed, si, inst),
                category_token=token("category", C.AGENT_KINDS[kind][1]),
                nbr_annotations=len(recs),
                first_annotation_token=recs[0]["token"],
                last_annotation_token=recs[-1]["token"],
            )
    (root / VERSION).mkdir(exist_ok=True)
    for name, recs in tb.t.items():
        save_json(root / VERSION / f"{name}.json", recs)
    save_json(
        root / "annotations.json",
        {
            "train_split": [n for n in names if n not in MINI_VAL],
            "val_split": [n for n in names if n in MINI_VAL],
            "scene_infos": occ_infos,
        },
    )
    if config.gt_cues:
        settings = {"cameras": list(CUE_CAMERAS), "flow_to": "next keyframe", "source": "synthetic world"}
        save_json(
            root / "gt_cues" / "manifest.json",
            {
                "format": 1,
                "dataset": "nuscenes",
                "cues": {
                    cue: {
                        "estimator": "synthetic-ground-truth",
                        "settings": settings,
                        "versions": {"occflow-data": __version__},
                    }
                    for cue in ("flow", "mask", "depth")
                },
            },
        )
    elapsed = time.perf_counter() - t_start
    return {
        "scenes": list(names),
        "keyframes": n_key,
        "seconds": elapsed,
        "seconds_per_keyframe": elapsed / max(n_key, 1),
    }


def _attribute(agent, box: dict, world: World) -> str:
    kind = agent.kind
    if kind in ("car", "truck", "bus"):
        if box["moving"]:
            return "vehicle.moving"
        prof = agent.trajectory.profile
        return "vehicle.parked" if prof.v0 == 0 and prof.accel == 0 else "vehicle.stopped"
    if kind in ("cyclist", "motorcycle"):
        return "cycle.with_rider"
    if kind == "pedestrian":
        return "pedestrian.moving" if box["moving"] else "pedestrian.standing"
    return ""


def _write_cues(
    root: Path, world: World, rig: Rig, sample_token: str, frame: CameraFrame, nxt: CameraFrame | None
) -> None:
    """Oracle cues of one keyframe in the cue-cache format (cameras in ``CUE_CAMERAS`` order)."""
    order = [next(i for i, c in enumerate(rig.cameras) if c.name == n) for n in CUE_CAMERAS]
    n, h, w = frame.depth.shape
    if nxt is not None:
        flow, valid = camera_flow(world, frame, nxt, rig.cameras)
    else:
        flow, valid = np.zeros((n, h, w, 2), np.float32), np.zeros((n, h, w), bool)
    flow = np.where(valid[..., None], flow, 0.0)  # invalid pixels may project anywhere (or behind)
    movable, _ = pixel_masks(world, frame)
    save_npz(
        root / "gt_cues" / "flow" / f"{sample_token}.npz",
        flow=flow[order].transpose(0, 3, 1, 2).astype(np.float16),
        valid=valid[order],
    )
    save_npz(root / "gt_cues" / "mask" / f"{sample_token}.npz", mask=movable[order])
    save_npz(root / "gt_cues" / "depth" / f"{sample_token}.npz", depth=frame.depth[order].astype(np.float16))
