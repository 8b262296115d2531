"""Occ3D-nuScenes class list and the class subsets the metrics use."""

#: Occ3D-nuScenes label names, index = label value (17 = free).
OCC3D_CLASSES: tuple[str, ...] = (
    "others", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
    "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain",
    "manmade", "vegetation", "free",
)
#: Label value of free space in Occ3D.
FREE_LABEL: int = 17
#: Occ3D label values of the eight moving classes scored by mAVE (OpenOcc / CVPR 2024 challenge order:
#: car, truck, trailer, bus, construction_vehicle, bicycle, motorcycle, pedestrian).
MOVING_CLASSES: tuple[int, ...] = (4, 10, 9, 3, 5, 2, 6, 7)
