"""The procedural street world: layout, static geometry, agents and the ego trajectory.

Everything lives in a planar *map frame* (x along the main street, y to its left, z up, metres,
road surface at z = 0). ``World.global_from_map`` places the map in the dataset's global frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _classes as C
from ._geometry import Boxes, BoxList
from ._paths import Path, SpeedProfile, Trajectory

CELL = 0.5  # ground grid cell, metres
LANE = 3.5
BIKE = 1.5
PARK = 2.5
ROAD_HALF = LANE + BIKE + PARK  # 7.5 m
SIDEWALK_OUT = ROAD_HALF + 4.0  # 11.5 m
STRIP_OUT = SIDEWALK_OUT + 3.5  # 15 m: green strip with trees
CROSS_HALF = 6.0  # half width of a cross street
CROSS_WALK = 10.0  # cross street half width incl. sidewalks
HEIGHT = {C.ROAD: 0.0, C.SIDEWALK: 0.15, C.TERRAIN: 0.12, C.OTHER_FLAT: 0.05}
APRON = 150.0  # flat terrain around the detailed map, metres


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the procedural world (all distances in metres, speeds in m/s).

    Attributes:
        half_width: the detailed map spans y in [-half_width, half_width].
        margin: map length before the ego start and after its end point.
        ego_speed: range of the ego's initial speed.
        traffic: multiplier of the number of moving agents (0 = only parked/static ones).
        pedestrians: multiplier of the number of pedestrians.
        parked_density: probability that a parking slot holds a vehicle.
        cross_street_spacing: range of distances between cross streets.
        turn_probability: chance that the ego turns right into a cross street (when one is in reach).
    """

    half_width: float = 60.0
    margin: float = 70.0
    ego_speed: tuple[float, float] = (4.0, 8.0)
    traffic: float = 1.0
    pedestrians: float = 1.0
    parked_density: float = 0.6
    cross_street_spacing: tuple[float, float] = (70.0, 110.0)
    turn_probability: float = 0.35

    def __post_init__(self) -> None:
        if not self.half_width >= 30.0:
            raise ValueError(f"WorldConfig.half_width must be >= 30 m, got {self.half_width}")
        if not self.margin >= 45.0:
            raise ValueError(f"WorldConfig.margin must be >= 45 m, got {self.margin}")
        lo, hi = self.ego_speed
        if not 0.5 <= lo <= hi <= 20.0:
            raise ValueError(
                f"WorldConfig.ego_speed must satisfy 0.5 <= lo <= hi <= 20, got {self.ego_speed}"
            )
        if not 0.0 <= self.turn_probability <= 1.0:
            raise ValueError(f"WorldConfig.turn_probability must be in [0, 1], got {self.turn_probability}")
        for name in ("traffic", "pedestrians", "parked_density"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"WorldConfig.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Agent:
    """An annotated rigid object: parts in its own frame (x forward, origin at the bottom centre of
    its box) and a trajectory.

    Attributes:
        kind: one of ``_classes.AGENT_KINDS``.
        parts: boxes in the object frame.
        size: (length, width, height) of its annotation box, metres.
        trajectory: its motion (static objects have a zero speed profile).
        instance: instance id (>= 1), unique in the world.
    """

    kind: str
    parts: Boxes
    size: tuple[float, float, float]
    trajectory: Trajectory
    instance: int

    @property
    def fine(self) -> int:
        return C.AGENT_KINDS[self.kind][0]


@dataclass
class Ground:
    """Piecewise-constant ground: a fine class and a height per ``CELL`` x ``CELL`` cell.

    Attributes:
        origin: (x, y) of the grid's lower corner in the map frame.
        fine: [NX, NY] uint8 fine class.
        height: [NX, NY] float32 surface height, metres.
    """

    origin: tuple[float, float]
    fine: np.ndarray
    height: np.ndarray

    def lookup(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fine class and surface height at map points (outside the grid: the terrain apron)."""
        i = np.floor((x - self.origin[0]) / CELL).astype(np.int64)
        j = np.floor((y - self.origin[1]) / CELL).astype(np.int64)
        inside = (i >= 0) & (j >= 0) & (i < self.fine.shape[0]) & (j < self.fine.shape[1])
        ic, jc = np.clip(i, 0, self.fine.shape[0] - 1), np.clip(j, 0, self.fine.shape[1] - 1)
        fine = np.where(inside, self.fine[ic, jc], C.TERRAIN).astype(np.uint8)
        height = np.where(inside, self.height[ic, jc], HEIGHT[C.TERRAIN]).astype(np.float64)
        return fine, height


@dataclass
class World:
    """A generated world (see ``make_world``).

    Attributes:
        seed: the seed it was made from.
        duration: seconds of ego driving it was laid out for.
        ground: the ground height/class grid.
        static: static boxes (buildings, trees, poles, signs, hedges) in the map frame.
        agents: annotated objects with trajectories.
        ego: the ego vehicle's trajectory (rear-axle centre on the ground, x forward).
        cross_streets: x of each cross street centre line.
        global_from_map: [4, 4] float64 placement of the map frame in the global frame.
        sun: unit vector towards the sun (map frame).
        texture_seed: seed of the procedural textures.
    """

    seed: int
    duration: float
    ground: Ground
    static: Boxes
    agents: list[Agent]
    ego: Trajectory
    cross_streets: np.ndarray
    global_from_map: np.ndarray
    sun: np.ndarray
    texture_seed: int
    config: WorldConfig = field(default_factory=WorldConfig)

    # ------------------------------------------------------------------ poses
    def ego_pose(self, t: float) -> np.ndarray:
        """Ego-to-map pose [4, 4] at time ``t`` (seconds)."""
        from ._geometry import pose_matrix

        pos, yaw, _ = self.ego.state(np.float64(t))
        return pose_matrix(pos[0], pos[1], pos[2], yaw)

    def ego_velocity(self, t: float) -> np.ndarray:
        """Ego velocity [3] in the map frame, m/s."""
        return self.ego.state(np.float64(t))[2]

    def agent_states(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions [K, 3] (bottom centre), yaws [K] and velocities [K, 3] (m/s) of all agents."""
        if not self.agents:
            return np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3))
        states = [a.trajectory.state(np.float64(t)) for a in self.agents]
        return (
            np.stack([s[0] for s in states]),
            np.array([float(s[1]) for s in states]),
            np.stack([s[2] for s in states]),
        )

    def agent_poses(self, t: float) -> np.ndarray:
        """Object-to-map poses [K, 4, 4] of all agents at time ``t``."""
        from ._geometry import pose_matrix

        pos, yaw, _ = self.agent_states(t)
        return pose_matrix(pos[:, 0], pos[:, 1], pos[:, 2], yaw)


# ---------------------------------------------------------------------- agents' shapes
def _vehicle(rng: np.random.Generator, kind: str) -> tuple[Boxes, tuple[float, float, float]]:
    b = BoxList()
    fine = C.AGENT_KINDS[kind][0]
    if kind == "car":
        length, width = rng.uniform(4.0, 4.9), rng.uniform(1.75, 1.95)
        body_h, cab_h = rng.uniform(0.75, 0.95), rng.uniform(0.45, 0.6)
        b.add_on(0, 0, 0.3, (length, width, body_h), 0, fine)
        b.add_on(-0.15 * length, 0, 0.3 + body_h, (0.5 * length, width - 0.12, cab_h), 0, C.GLASS)
        height = 0.3 + body_h + cab_h
        axle = 0.32 * length
    elif kind == "truck":
        length, width = rng.uniform(6.5, 9.0), rng.uniform(2.3, 2.5)
        height = rng.uniform(3.0, 3.6)
        cab = 2.2
        b.add_on(length / 2 - cab / 2, 0, 0.5, (cab, width, 2.1), 0, fine)
        b.add_on(length / 2 - cab / 2 + 0.6, 0, 1.8, (0.9, width - 0.1, 0.7), 0, C.GLASS)
        b.add_on(-cab / 2 - 0.1, 0, 0.6, (length - cab - 0.2, width, height - 0.6), 0, C.TRUCK)
        axle = 0.36 * length
    else:  # bus
        length, width = rng.uniform(10.5, 12.5), 2.5
        height = rng.uniform(3.0, 3.3)
        b.add_on(0, 0, 0.3, (length, width, height - 0.3), 0, fine)
        b.add_on(0.05, 0, 1.4, (length - 0.6, width + 0.04, 0.9), 0, C.GLASS)
        axle = 0.36 * length
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.add_on(sx * axle, sy * (width / 2 - 0.17), 0.0, (0.65, 0.3, 0.65), 0, C.WHEEL)
    return b.build(), (length, width, height)


def _two_wheeler(rng: np.random.Generator, kind: str) -> tuple[Boxes, tuple[float, float, float]]:
    b = BoxList()
    fine = C.AGENT_KINDS[kind][0]
    length = rng.uniform(1.6, 1.8) if kind == "cyclist" else rng.uniform(1.9, 2.2)
    frame_w = 0.12 if kind == "cyclist" else 0.45
    b.add_on(0, 0, 0.0, (length, frame_w, 0.9), 0, C.WHEEL if kind == "cyclist" else fine)
    b.add_on(-0.1, 0, 0.9, (0.45, 0.42, 0.6), 0, fine)  # rider torso
    b.add_on(-0.05, 0, 1.5, (0.22, 0.2, 0.25), 0, C.PEDESTRIAN)  # head
    return b.build(), (length, 0.6, 1.75)


def _pedestrian(rng: np.random.Generator) -> tuple[Boxes, tuple[float, float, float]]:
    b = BoxList()
    h = rng.uniform(1.55, 1.9)
    b.add_on(0, 0, 0.0, (0.28, 0.42, 0.48 * h), 0, C.PEDESTRIAN)
    b.add_on(0, 0, 0.48 * h, (0.3, 0.52, 0.37 * h), 0, C.PEDESTRIAN)
    b.add_on(0, 0, 0.85 * h, (0.22, 0.2, 0.15 * h), 0, C.PEDESTRIAN)
    return b.build(), (0.3, 0.52, h)


def _barrier() -> tuple[Boxes, tuple[float, float, float]]:
    b = BoxList()
    b.add_on(0, 0, 0.0, (2.0, 0.5, 0.35), 0, C.BARRIER)
    b.add_on(0, 0, 0.35, (2.0, 0.22, 0.55), 0, C.BARRIER)
    return b.build(), (2.0, 0.5, 0.9)


def _cone() -> tuple[Boxes, tuple[float, float, float]]:
    b = BoxList()
    b.add_on(0, 0, 0.0, (0.4, 0.4, 0.06), 0, C.CONE)
    b.add_on(0, 0, 0.06, (0.24, 0.24, 0.34), 0, C.CONE)
    b.add_on(0, 0, 0.4, (0.12, 0.12, 0.3), 0, C.CONE)
    return b.build(), (0.4, 0.4, 0.7)


def _shape(rng: np.random.Generator, kind: str):
    if kind in ("car", "truck", "bus"):
        return _vehicle(rng, kind)
    if kind in ("cyclist", "motorcycle"):
        return _two_wheeler(rng, kind)
    if kind == "pedestrian":
        return _pedestrian(rng)
    return _barrier() if kind == "barrier" else _cone()


def _footprints(trajs_sizes, times: np.ndarray, margin: float) -> tuple[np.ndarray, ...]:
    """Rectangles [N, T] (centre x, y, cos, sin, half length, half width) of objects over time."""
    cx, cy, c, s, hl, hw = [], [], [], [], [], []
    for traj, size in trajs_sizes:
        pos, yaw, _ = traj.state(times)
        cx.append(pos[:, 0])
        cy.append(pos[:, 1])
        c.append(np.cos(yaw))
        s.append(np.sin(yaw))
        hl.append(np.full(len(times), size[0] / 2 + margin))
        hw.append(np.full(len(times), size[1] / 2 + margin))
    return tuple(np.array(v) for v in (cx, cy, c, s, hl, hw))


def _overlap(a: tuple, b: tuple) -> np.ndarray:
    """Separating-axis test of rectangles a [T] and b [M, T] -> [M, T] bool (True = they overlap)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    sep = np.zeros(np.broadcast(dx, dy).shape, bool)
    for r in (a, b):
        for ax_x, ax_y in ((r[2], r[3]), (-r[3], r[2])):
            dist = np.abs(dx * ax_x + dy * ax_y)
            ra = a[4] * np.abs(a[2] * ax_x + a[3] * ax_y) + a[5] * np.abs(-a[3] * ax_x + a[2] * ax_y)
            rb = b[4] * np.abs(b[2] * ax_x + b[3] * ax_y) + b[5] * np.abs(-b[3] * ax_x + b[2] * ax_y)
            sep |= dist > ra + rb
    return ~sep


def _collision_free(trajs_sizes, ego: Trajectory, duration: float) -> list[bool]:
    """Greedy filter (in list order) keeping objects that never overlap a kept one or the ego
    vehicle (a 4.8 x 2.0 m box around its rear-axle origin) during [0, duration] s."""
    times = np.arange(0.0, duration + 0.05, 0.05)
    foot = _footprints(trajs_sizes, times, 0.15)
    epos, eyaw, _ = ego.state(times)
    ego_foot = (
        epos[:, 0] + 1.35 * np.cos(eyaw),
        epos[:, 1] + 1.35 * np.sin(eyaw),
        np.cos(eyaw),
        np.sin(eyaw),
        np.full(len(times), 2.4 + 0.5),
        np.full(len(times), 1.0 + 0.3),
    )
    keep: list[bool] = []
    kept_idx: list[int] = []
    for i in range(len(trajs_sizes)):
        mine = tuple(v[i] for v in foot)
        hit = bool(_overlap(ego_foot, tuple(v[None] for v in mine)).any())
        if not hit and kept_idx:
            others = tuple(v[kept_idx] for v in foot)
            hit = bool(_overlap(mine, others).any())
        keep.append(not hit)
        if not hit:
            kept_idx.append(i)
    return keep


# ---------------------------------------------------------------------- layout
def make_world(seed: int, duration: float, config: WorldConfig | None = None) -> World:
    """Generate a street world decided by ``seed``, long enough for ``duration`` seconds of driving.

    Args:
        seed: any non-negative int; the same seed (and config) gives the same world.
        duration: seconds the ego drives (> 0).
        config: world knobs (``WorldConfig()`` by default).

    Returns:
        The world, in the map frame (see module docstring).
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    cfg = config or WorldConfig()
    rng = np.random.default_rng([int(seed), 4242])

    # Ego: right lane (y = -LANE/2), gentle lateral wander so the heading changes.
    v0 = rng.uniform(*cfg.ego_speed)
    accel = rng.uniform(-0.12, 0.3)
    profile = SpeedProfile(v0=v0, accel=accel, v_max=cfg.ego_speed[1] + 2.0)
    ego_len = float(profile.at(duration + 1.0)[0]) + 2.0
    amp, wavelength, phase = rng.uniform(0.15, 0.45), rng.uniform(35, 70), rng.uniform(0, 2 * np.pi)
    xs = np.arange(0.0, ego_len + 20.0, 0.05)
    ego_path = Path.from_points(
        np.stack([xs, -LANE / 2 + amp * np.sin(2 * np.pi * xs / wavelength + phase)], 1)
    )
    turn_draw = rng.uniform()

    x_lo, x_hi = -cfg.margin, np.ceil((ego_len + cfg.margin) / 10) * 10
    y_hi = cfg.half_width
    # Cross streets.
    cross = []
    x = rng.uniform(25.0, 60.0)
    while x < x_hi - 30.0 and len(cross) < 8:
        cross.append(round(x * 2) / 2)
        x += rng.uniform(*cfg.cross_street_spacing)
    cross = np.array(cross)
    # Some drives turn right into a cross street (radius 5.75 m, from the right lane into the
    # cross street's right lane) when one lies ahead with little road left after it.
    turn_radius = ROAD_HALF - LANE / 2
    turnable = [
        xc
        for xc in cross
        if xc - LANE / 2 - turn_radius >= 20.0
        and ego_len - (xc - LANE / 2 - turn_radius) - turn_radius * np.pi / 2 <= 45.0
        and xc - LANE / 2 - turn_radius < ego_len
    ]
    if turnable and turn_draw < cfg.turn_probability:
        x_turn = turnable[0] - LANE / 2 - turn_radius
        ego_path = Path.from_segments(
            (0.0, -LANE / 2),
            0.0,
            [("line", x_turn), ("arc", turn_radius, -np.pi / 2), ("line", ego_len + 20.0)],
        )
    ego = Trajectory(ego_path, profile, 0.0)

    # Ground grid.
    nx, ny = int(round((x_hi - x_lo) / CELL)), int(round(2 * y_hi / CELL))
    cx = x_lo + (np.arange(nx) + 0.5) * CELL
    cy = -y_hi + (np.arange(ny) + 0.5) * CELL
    X, Y = np.meshgrid(cx, cy, indexing="ij")
    fine = np.full((nx, ny), C.TERRAIN, np.uint8)
    ay = np.abs(Y)
    fine[ay < SIDEWALK_OUT] = C.SIDEWALK
    near_cross = np.zeros_like(X, bool)
    for xc in cross:
        dx = np.abs(X - xc)
        fine[(dx < CROSS_WALK) & (ay >= ROAD_HALF) & (fine == C.TERRAIN)] = C.SIDEWALK
        fine[(dx < CROSS_HALF) & (ay >= ROAD_HALF)] = C.ROAD
        near_cross |= dx < CROSS_WALK + 4.0
    fine[ay < ROAD_HALF] = C.ROAD

    static = BoxList()
    agents: list[tuple[str, Trajectory]] = []

    def free_x(x: float, pad: float) -> bool:
        return bool(np.all(np.abs(cross - x) > CROSS_WALK + pad)) if len(cross) else True

    # Buildings, lots, trees, hedges, lights and signs on both sides.
    for side in (-1, 1):
        x = x_lo + rng.uniform(0, 8)
        while x < x_hi - 8:
            w = rng.uniform(10, 26)
            xm = x + w / 2
            if not free_x(xm, w / 2 + 2):
                x += 6.0
                continue
            y0 = STRIP_OUT + rng.uniform(0.5, 4.0)
            depth = rng.uniform(8, 16)
            if rng.uniform() < 0.2:  # a paved lot instead of a building
                lot = (np.abs(X - xm) < w / 2) & (side * Y > STRIP_OUT) & (side * Y < STRIP_OUT + depth)
                fine[lot] = C.OTHER_FLAT
            else:
                h = rng.uniform(5, 18)
                static.add_on(xm, side * (y0 + depth / 2), HEIGHT[C.TERRAIN], (w, depth, h), 0, C.BUILDING)
                if rng.uniform() < 0.4:  # a roof box
                    static.add_on(
                        xm + rng.uniform(-w / 4, w / 4),
                        side * (y0 + depth / 2),
                        HEIGHT[C.TERRAIN] + h,
                        (w / 3, depth / 2, rng.uniform(1, 3)),
                        0,
                        C.BUILDING,
                    )
            x += w + rng.uniform(2, 9)
        # Trees and hedges on the green strip.
        x = x_lo + rng.uniform(0, 6)
        while x < x_hi - 3:
            if free_x(x, 1.5):
                y = side * (SIDEWALK_OUT + 1.75)
                if rng.uniform() < 0.75:
                    trunk_h = rng.uniform(2.0, 3.2)
                    crown = rng.uniform(2.5, 4.0)
                    static.add_on(x, y, HEIGHT[C.TERRAIN], (0.35, 0.35, trunk_h + 0.5), 0, C.TRUNK)
                    z0 = HEIGHT[C.TERRAIN] + trunk_h
                    for yaw in (0.0, np.pi / 4):
                        static.add_on(
                            x, y, z0, (crown, crown, crown * 0.9), yaw + rng.uniform(0, 0.3), C.FOLIAGE
                        )
                else:
                    static.add_on(
                        x, y, HEIGHT[C.TERRAIN], (rng.uniform(3, 7), 1.0, rng.uniform(0.7, 1.3)), 0, C.HEDGE
                    )
            x += rng.uniform(8, 14)
        # Street lights at the kerb, arm over the road.
        x = x_lo + rng.uniform(0, 10)
        while x < x_hi - 2:
            if free_x(x, 0.5):
                y = side * (ROAD_HALF + 0.6)
                static.add_on(x, y, HEIGHT[C.SIDEWALK], (0.22, 0.22, 7.0), 0, C.POLE)
                static.add_on(x, y - side * 1.0, HEIGHT[C.SIDEWALK] + 6.8, (0.16, 2.0, 0.16), 0, C.POLE)
                static.add_on(x, y - side * 1.8, HEIGHT[C.SIDEWALK] + 6.6, (0.5, 0.3, 0.2), 0, C.SIGN)
            x += rng.uniform(24, 36)
        # Signs.
        for _ in range(rng.integers(2, 6)):
            x = rng.uniform(x_lo + 5, x_hi - 5)
            if free_x(x, 0.5):
                y = side * (ROAD_HALF + 1.2)
                static.add_on(x, y, HEIGHT[C.SIDEWALK], (0.1, 0.1, 2.4), 0, C.POLE)
                static.add_on(x, y, HEIGHT[C.SIDEWALK] + 2.0, (0.06, 0.7, 0.7), 0, C.SIGN)
    # Along the cross streets beyond the main street's blocks: buildings and trees.
    for xc in cross:
        for sx in (-1, 1):
            for sy in (-1, 1):
                y = 37.0 + rng.uniform(0, 4)
                while y < y_hi - 6:
                    w = rng.uniform(8, 16)
                    if y + w > y_hi - 1:
                        break
                    depth = rng.uniform(8, 14)
                    xm = xc + sx * (CROSS_WALK + 1.5 + depth / 2)
                    static.add_on(
                        xm, sy * (y + w / 2), HEIGHT[C.TERRAIN], (depth, w, rng.uniform(5, 15)), 0, C.BUILDING
                    )
                    y += w + rng.uniform(2, 6)
                for y in np.arange(STRIP_OUT + 2.0, y_hi - 2, rng.uniform(9, 13)):
                    if y > 35.0:
                        x = xc + sx * (CROSS_WALK - 0.6)
                        static.add_on(x, sy * y, HEIGHT[C.SIDEWALK], (0.3, 0.3, 2.8), 0, C.TRUNK)
                        static.add_on(x, sy * y, HEIGHT[C.SIDEWALK] + 2.5, (2.4, 2.4, 2.2), 0.4, C.FOLIAGE)
    # Traffic lights at the corners of crossings.
    for xc in cross:
        for sx, sy in ((-1, -1), (1, 1)):
            x, y = xc + sx * (CROSS_WALK - 0.8), sy * (ROAD_HALF + 0.8)
            static.add_on(x, y, HEIGHT[C.SIDEWALK], (0.25, 0.25, 5.5), 0, C.POLE)
            static.add_on(x, y, HEIGHT[C.SIDEWALK] + 4.0, (0.4, 0.4, 1.2), 0, C.SIGN)

    height = np.vectorize(lambda f: HEIGHT[int(f)], otypes=[np.float32])(fine)
    ground = Ground((x_lo, -y_hi), fine, height)

    # ------------------------------------------------------------------ agents
    def straight(x0, y0, heading, length, prof, z=0.0):
        path = Path.from_segments((x0, y0), heading, [("line", length)], step=0.5)
        return Trajectory(path, prof, z)

    def parked(x, y, heading, z=0.0):
        return straight(x, y, heading, 1.0, SpeedProfile(), z)

    # Construction zone: barriers and cones in a parking lane.
    zone = None
    if rng.uniform() < 0.6:
        side = rng.choice([-1, 1])
        zx = rng.uniform(15, max(x_hi - 40, 20))
        if free_x(zx, 12):
            zone = (side, zx - 8, zx + 8)
            for xb in np.arange(zx - 8, zx + 8, 2.2):
                agents.append(("barrier", parked(xb, side * (ROAD_HALF - 0.6), 0.0)))
            for xb in np.arange(zx - 9, zx + 9, 3.0):
                agents.append(("cone", parked(xb, side * (ROAD_HALF - PARK - 0.3), 0.0)))
    # Parked vehicles.
    for side in (-1, 1):
        x = x_lo + 3
        while x < x_hi - 3:
            kind = "truck" if rng.uniform() < 0.12 else "car"
            slot = 9.5 if kind == "truck" else 5.8
            xm = x + slot / 2
            in_zone = zone is not None and zone[0] == side and zone[1] - 6 < xm < zone[2] + 6
            if free_x(xm, 4.0) and not in_zone and rng.uniform() < cfg.parked_density:
                agents.append((kind, parked(xm, side * (ROAD_HALF - PARK / 2), 0.0 if side < 0 else np.pi)))
            x += slot + rng.uniform(0.5, 3.0)

    def n_of(mean: float, scale: float) -> int:
        return int(rng.poisson(mean * scale)) if scale > 0 else 0

    v_ego_max = profile.v_max
    # Same direction, ahead of the ego, faster than it.
    for i in range(n_of(1.5, cfg.traffic)):
        kind = rng.choice(["car", "car", "truck", "bus"])
        x0 = rng.uniform(18, 45) + 22 * i
        agents.append(
            (
                str(kind),
                straight(
                    x0,
                    -LANE / 2,
                    0.0,
                    x_hi + 400,
                    SpeedProfile(v0=v_ego_max + rng.uniform(1, 3), accel=rng.uniform(0, 0.5)),
                ),
            )
        )
    # Oncoming lane; some stop.
    for _ in range(n_of(5.0, cfg.traffic)):
        kind = rng.choice(["car", "car", "car", "truck", "bus"])
        x0 = rng.uniform(0, x_hi + 60)
        v = rng.uniform(4, 11)
        acc = -rng.uniform(0.8, 2.0) if rng.uniform() < 0.3 else 0.0
        agents.append(
            (
                str(kind),
                straight(
                    x0, LANE / 2, np.pi, x0 - x_lo + 400, SpeedProfile(v0=v, accel=acc, t0=rng.uniform(0, 2))
                ),
            )
        )
    # Cross-street traffic: turn into the oncoming lane, or stop before the main road.
    for xc in cross:
        for _ in range(n_of(1.2, cfg.traffic)):
            kind = str(rng.choice(["car", "car", "truck"]))
            mode = rng.integers(0, 3)
            t0 = rng.uniform(0, max(duration - 4, 0.5))
            v = rng.uniform(4, 7)
            if mode == 0:  # from the right (y < 0) heading +y, left turn onto y = +LANE/2 heading -x
                r = ROAD_HALF + LANE / 2 + 0.0
                path = Path.from_segments(
                    (xc + LANE / 2, -45.0),
                    np.pi / 2,
                    [("line", 45.0 - ROAD_HALF), ("arc", r, np.pi / 2), ("line", 300)],
                )
                agents.append((kind, Trajectory(path, SpeedProfile(v0=v, t0=t0))))
            elif mode == 1:  # from the left (y > 0) heading -y, right turn onto y = +LANE/2 heading -x
                r = ROAD_HALF - LANE / 2
                path = Path.from_segments(
                    (xc - LANE / 2, 45.0),
                    -np.pi / 2,
                    [("line", 45.0 - ROAD_HALF), ("arc", r, -np.pi / 2), ("line", 300)],
                )
                agents.append((kind, Trajectory(path, SpeedProfile(v0=v, t0=t0))))
            else:  # approaches and stops at the stop line
                stop = 45.0 - ROAD_HALF - 2.5 - rng.uniform(0, 6)
                agents.append(
                    (
                        kind,
                        Trajectory(
                            Path.from_segments((xc + LANE / 2, -45.0), np.pi / 2, [("line", 60.0)], step=0.5),
                            SpeedProfile(v0=v, accel=-v * v / (2 * stop)),
                        ),
                    )
                )
    # Cyclists and motorcycles in the bike lanes.
    for _ in range(n_of(2.0, cfg.traffic)):
        side = rng.choice([-1, 1])
        kind = "motorcycle" if rng.uniform() < 0.2 else "cyclist"
        x0 = rng.uniform(x_lo + 10, x_hi - 10)
        v = rng.uniform(3, 6) if kind == "cyclist" else rng.uniform(6, 10)
        heading = 0.0 if side < 0 else np.pi
        agents.append((kind, straight(x0, side * (LANE + BIKE / 2), heading, 500, SpeedProfile(v0=v))))
    # Pedestrians: walking or standing on sidewalks, crossing at crossings.
    for _ in range(n_of(8.0, cfg.pedestrians)):
        side = rng.choice([-1, 1])
        x0 = rng.uniform(x_lo + 5, x_hi - 5)
        y0 = side * rng.uniform(ROAD_HALF + 1.5, SIDEWALK_OUT - 0.6)
        heading = rng.choice([0.0, np.pi])
        v = 0.0 if rng.uniform() < 0.3 else rng.uniform(0.8, 1.6)
        agents.append(("pedestrian", straight(x0, y0, heading, 200, SpeedProfile(v0=v), HEIGHT[C.SIDEWALK])))
    for xc in cross:
        for _ in range(n_of(1.5, cfg.pedestrians)):
            side = rng.choice([-1, 1])
            x0 = xc + rng.choice([-1, 1]) * rng.uniform(CROSS_HALF + 0.8, CROSS_WALK - 0.8)
            length = 2 * ROAD_HALF - 0.6
            agents.append(
                (
                    "pedestrian",
                    straight(
                        x0,
                        -side * (ROAD_HALF - 0.3),
                        side * np.pi / 2,
                        length,
                        SpeedProfile(v0=rng.uniform(1.0, 1.5), t0=rng.uniform(0, duration), s_max=length),
                    ),
                )
            )

    shaped = [(kind, traj, *_shape(rng, kind)) for kind, traj in agents]
    keep = _collision_free([(traj, size) for _, traj, _, size in shaped], ego, duration)
    built = [
        Agent(kind, parts, tuple(float(v) for v in size), traj, n + 1)
        for n, (kind, traj, parts, size) in enumerate(s for s, k in zip(shaped, keep, strict=True) if k)
    ]

    # Global placement: a multiple of 90 degrees and an offset keeping coordinates positive.
    quarter = int(rng.integers(0, 4))
    yaw = quarter * np.pi / 2
    from ._geometry import pose_matrix

    rot = pose_matrix(0.0, 0.0, 0.0, yaw)
    corners = (
        np.array([[x_lo, -y_hi, 0, 1], [x_hi, y_hi, 0, 1], [x_lo, y_hi, 0, 1], [x_hi, -y_hi, 0, 1]]) @ rot.T
    )
    offset = -corners[:, :2].min(0) + np.round(rng.uniform(5, 50, 2))
    g = rot.copy()
    g[:2, 3] = offset
    sun_az, sun_el = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.1)
    sun = np.array([np.cos(sun_az) * np.cos(sun_el), np.sin(sun_az) * np.cos(sun_el), np.sin(sun_el)])
    return World(
        int(seed),
        float(duration),
        ground,
        static.build(),
        built,
        ego,
        cross,
        g,
        sun,
        int(rng.integers(0, 2**30)),
        cfg,
    )
