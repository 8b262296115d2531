"""Fine material classes of the synthetic world and their mappings to dataset label sets."""

from __future__ import annotations

import numpy as np

# Fine classes: what a surface is made of. They decide the texture and map to Occ3D-nuScenes
# classes, SemanticKITTI label ids, nuScenes categories and KITTI object types.
ROAD, SIDEWALK, TERRAIN, OTHER_FLAT, BUILDING, POLE, SIGN, TRUNK, FOLIAGE, HEDGE = range(10)
BARRIER, CONE, CAR, TRUCK, BUS, CYCLIST, MOTORCYCLE, PEDESTRIAN, WHEEL, GLASS = range(10, 20)
NUM_FINE = 20

FINE_NAMES = (
    "road",
    "sidewalk",
    "terrain",
    "other_flat",
    "building",
    "pole",
    "sign",
    "trunk",
    "foliage",
    "hedge",
    "barrier",
    "cone",
    "car",
    "truck",
    "bus",
    "cyclist",
    "motorcycle",
    "pedestrian",
    "wheel",
    "glass",
)

#: Occ3D-nuScenes class names, index = label (17 = free).
OCC3D_CLASSES = (
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
    "free",
)
FREE = 17

# Wheels and glass belong to the object they are part of; their Occ3D label is decided by the
# agent class (see _agents.py), the entries below are only used for static geometry.
FINE_TO_OCC3D = np.array(
    [11, 13, 14, 12, 15, 15, 15, 16, 16, 16, 1, 8, 4, 10, 3, 2, 6, 7, 0, 0], dtype=np.uint8
)

# SemanticKITTI raw label ids (static, moving) per fine class.
FINE_TO_SEMKITTI = np.array(
    [40, 48, 72, 49, 50, 80, 81, 71, 70, 70, 51, 99, 10, 18, 13, 31, 32, 30, 0, 0], dtype=np.uint16
)
FINE_TO_SEMKITTI_MOVING = np.array(
    [40, 48, 72, 49, 50, 80, 81, 71, 70, 70, 51, 99, 252, 258, 257, 253, 255, 254, 0, 0], dtype=np.uint16
)

#: Agent kinds (annotated objects) -> (fine class, nuScenes category, KITTI tracking type).
AGENT_KINDS = {
    "car": (CAR, "vehicle.car", "Car"),
    "truck": (TRUCK, "vehicle.truck", "Truck"),
    "bus": (BUS, "vehicle.bus.rigid", "Misc"),
    "cyclist": (CYCLIST, "vehicle.bicycle", "Cyclist"),
    "motorcycle": (MOTORCYCLE, "vehicle.motorcycle", "Cyclist"),
    "pedestrian": (PEDESTRIAN, "human.pedestrian.adult", "Pedestrian"),
    "barrier": (BARRIER, "movable_object.barrier", "Misc"),
    "cone": (CONE, "movable_object.trafficcone", "Misc"),
}
AGENT_KIND_NAMES = tuple(AGENT_KINDS)

# Base albedo (linear-ish RGB in [0, 1]) per fine class; textures modulate it.
FINE_ALBEDO = np.array(
    [
        [0.30, 0.30, 0.32],  # road
        [0.58, 0.56, 0.52],  # sidewalk
        [0.30, 0.45, 0.18],  # terrain
        [0.45, 0.42, 0.40],  # other_flat
        [0.62, 0.50, 0.42],  # building
        [0.45, 0.46, 0.48],  # pole
        [0.20, 0.35, 0.75],  # sign
        [0.35, 0.24, 0.15],  # trunk
        [0.16, 0.42, 0.14],  # foliage
        [0.20, 0.38, 0.16],  # hedge
        [0.80, 0.62, 0.25],  # barrier
        [0.95, 0.45, 0.10],  # cone
        [0.60, 0.15, 0.15],  # car (tinted per instance)
        [0.75, 0.75, 0.72],  # truck
        [0.85, 0.70, 0.15],  # bus
        [0.25, 0.45, 0.70],  # cyclist
        [0.30, 0.30, 0.35],  # motorcycle
        [0.40, 0.30, 0.45],  # pedestrian
        [0.08, 0.08, 0.08],  # wheel
        [0.15, 0.20, 0.28],  # glass
    ],
    dtype=np.float32,
)

#: Occ3D class colours (RGB uint8) for pictures.
OCC3D_COLOURS = np.array(
    [
        [0, 0, 0],
        [255, 120, 50],
        [255, 192, 203],
        [255, 255, 0],
        [0, 150, 245],
        [0, 255, 255],
        [200, 180, 0],
        [255, 0, 0],
        [255, 240, 150],
        [135, 60, 0],
        [160, 32, 240],
        [255, 0, 255],
        [139, 137, 137],
        [75, 0, 75],
        [150, 240, 80],
        [230, 230, 250],
        [0, 175, 0],
        [255, 255, 255],
    ],
    dtype=np.uint8,
)
