"""Sensor rigs: cameras and spinning LiDARs mounted on the ego vehicle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._geometry import camera_rotation, pose_matrix


@dataclass(frozen=True)
class Camera:
    """A pinhole camera (OpenCV axes: x right, y down, z forward; pixel centres at integer coordinates).

    Attributes:
        name: channel name (e.g. ``CAM_FRONT``, ``image_2``).
        width, height: image size, pixels.
        intrinsics: [3, 3] K, pixels.
        cam_to_ego: [4, 4] camera-to-ego transform, metres.
    """

    name: str
    width: int
    height: int
    intrinsics: np.ndarray
    cam_to_ego: np.ndarray


@dataclass(frozen=True)
class Lidar:
    """A spinning LiDAR (sensor frame: x forward of the sensor, y left, z up).

    Attributes:
        name: channel name.
        elevations: [B] beam elevation angles, radians, ring 0 first.
        azimuth_bins: rays per beam and revolution.
        sensor_to_ego: [4, 4].
        max_range: metres; rays without a hit closer than this give no point.
    """

    name: str
    elevations: np.ndarray
    azimuth_bins: int
    sensor_to_ego: np.ndarray
    max_range: float

    def directions(self) -> np.ndarray:
        """Unit ray directions [B, A, 3] in the sensor frame (azimuth 0 = +x, counter-clockwise)."""
        az = np.arange(self.azimuth_bins) * (2 * np.pi / self.azimuth_bins)
        el = self.elevations[:, None]
        return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el) + 0 * az], -1)


@dataclass(frozen=True)
class Rig:
    """Cameras and one LiDAR on the ego vehicle (ego frame: x forward, y left, z up, origin on the
    ground under the rear axle)."""

    name: str
    cameras: tuple[Camera, ...]
    lidar: Lidar


def _mount(x: float, y: float, z: float, rot: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = (x, y, z)
    return t


def _scaled_k(f: float, cx: float, cy: float, full: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of a full-size camera resampled to ``size`` (height, width), pixel-centre convention."""
    sy, sx = size[0] / full[0], size[1] / full[1]
    return np.array([[f * sx, 0.0, (cx + 0.5) * sx - 0.5], [0.0, f * sy, (cy + 0.5) * sy - 0.5], [0, 0, 1]])


# name, (x, y, z), yaw deg, focal, cx, cy  (close to nuScenes' 1600 x 900 calibration)
_NUSCENES_CAMERAS = (
    ("CAM_FRONT", (1.70, 0.016, 1.51), 0.0, 1266.4, 816.3, 491.5),
    ("CAM_FRONT_RIGHT", (1.55, -0.49, 1.49), -55.0, 1260.8, 807.9, 495.3),
    ("CAM_FRONT_LEFT", (1.52, 0.49, 1.51), 55.0, 1272.6, 826.6, 479.8),
    ("CAM_BACK", (0.03, 0.0, 1.58), 180.0, 809.2, 829.2, 481.8),
    ("CAM_BACK_LEFT", (1.04, 0.48, 1.56), 110.0, 1256.7, 817.8, 452.0),
    ("CAM_BACK_RIGHT", (1.04, -0.48, 1.56), -110.0, 1259.5, 807.3, 501.2),
)


def _check_size(height: int, width: int) -> None:
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 8 <= v <= 4096:
            raise ValueError(f"{name} must be an int in [8, 4096] pixels, got {v!r}")


def nuscenes_rig(height: int = 225, width: int = 400, azimuth_bins: int = 1080) -> Rig:
    """The nuScenes-like rig: 6 surround cameras and a 32-beam LIDAR_TOP (x right, y forward).

    Args:
        height, width: image size in pixels (nuScenes: 900 x 1600; intrinsics are scaled).
        azimuth_bins: LiDAR rays per beam and revolution.
    """
    _check_size(height, width)
    cams = tuple(
        Camera(
            name,
            width,
            height,
            _scaled_k(f, cx, cy, (900, 1600), (height, width)),
            _mount(*pos, camera_rotation(np.deg2rad(yaw))),
        )
        for name, pos, yaw, f, cx, cy in _NUSCENES_CAMERAS
    )
    lidar = Lidar(
        "LIDAR_TOP",
        np.deg2rad(np.linspace(-30.67, 10.67, 32)),
        int(azimuth_bins),
        pose_matrix(0.943, 0.0, 1.84, -np.pi / 2),
        70.0,
    )
    return Rig("nuscenes", cams, lidar)


#: KITTI mounting (ego = ground under the rear axle): camera 0 and the Velodyne HDL-64E.
KITTI_CAM0 = (1.27, 0.0, 1.65)
KITTI_VELO = (1.0, 0.0, 1.73)
KITTI_IMU = (0.19, 0.0, 0.93)
KITTI_BASELINE = 0.54
KITTI_CAM2_OFFSET = 0.06  # colour camera 2 sits 6 cm left of camera 0


def kitti_rig(height: int = 188, width: int = 620, azimuth_bins: int = 1800) -> Rig:
    """The KITTI-like rig: colour stereo pair ``image_2``/``image_3`` (0.54 m baseline) and a 64-beam
    Velodyne. Intrinsics scale KITTI odometry's 1241 x 376 calibration to ``height`` x ``width``."""
    _check_size(height, width)
    k = _scaled_k(718.856, 607.1928, 185.2157, (376, 1241), (height, width))
    rot = camera_rotation(0.0)
    x, y, z = KITTI_CAM0
    cams = (
        Camera("image_2", width, height, k, _mount(x, y + KITTI_CAM2_OFFSET, z, rot)),
        Camera("image_3", width, height, k, _mount(x, y + KITTI_CAM2_OFFSET - KITTI_BASELINE, z, rot)),
    )
    lidar = Lidar(
        "velodyne",
        np.deg2rad(np.linspace(2.0, -24.9, 64)),
        int(azimuth_bins),
        pose_matrix(*KITTI_VELO, 0.0),
        80.0,
    )
    return Rig("kitti", cams, lidar)
