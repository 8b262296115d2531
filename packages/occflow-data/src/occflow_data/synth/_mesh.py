"""Triangle soups of the world: the ground (merged rectangles + kerb walls) and boxes."""

from __future__ import annotations

import numpy as np

from . import _classes as C
from ._geometry import box_triangles
from ._world import APRON, CELL, World


def _runs(row: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal values in a 1-D array: (start, stop, value)."""
    edges = np.flatnonzero(np.diff(row)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(row)]])
    return [(int(a), int(b), int(row[a])) for a, b in zip(starts, stops, strict=True)]


def _rectangles(label: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Greedy cover of a label grid [NX, NY] by rectangles (i0, i1, j0, j1, label)."""
    rects = []
    open_: dict[tuple[int, int, int], int] = {}  # (i0, i1, value) -> j0
    for j in range(label.shape[1] + 1):
        runs = set(_runs(label[:, j])) if j < label.shape[1] else set()
        for key in list(open_):
            if key not in runs:
                rects.append((key[0], key[1], open_.pop(key), j, key[2]))
        for key in runs:
            open_.setdefault(key, j)
    return rects


def ground_mesh(world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground triangles: vertices [V, 3], indices [T, 3], fine class per triangle [T]."""
    g = world.ground
    nx, ny = g.fine.shape
    heights = np.round(g.height * 1000).astype(np.int64)
    label = g.fine.astype(np.int64) * 100000 + heights
    x0, y0 = g.origin
    verts, tris, fine = [], [], []

    def quad(p0, p1, p2, p3, f):
        base = len(verts)
        verts.extend([p0, p1, p2, p3])
        tris.extend([[base, base + 1, base + 2], [base, base + 2, base + 3]])
        fine.extend([f, f])

    for i0, i1, j0, j1, lab in _rectangles(label):
        f, z = lab // 100000, (lab % 100000) / 1000.0
        xa, xb, ya, yb = x0 + i0 * CELL, x0 + i1 * CELL, y0 + j0 * CELL, y0 + j1 * CELL
        quad((xa, ya, z), (xb, ya, z), (xb, yb, z), (xa, yb, z), f)
    # The apron: four flat terrain rectangles around the grid.
    zt = 0.12
    xa, xb, ya, yb = x0, x0 + nx * CELL, y0, y0 + ny * CELL
    for p, q, r, s in (
        ((xa - APRON, ya - APRON), (xb + APRON, ya - APRON), (xb + APRON, ya), (xa - APRON, ya)),
        ((xa - APRON, yb), (xb + APRON, yb), (xb + APRON, yb + APRON), (xa - APRON, yb + APRON)),
        ((xa - APRON, ya), (xa, ya), (xa, yb), (xa - APRON, yb)),
        ((xb, ya), (xb + APRON, ya), (xb + APRON, yb), (xb, yb)),
    ):
        quad((*p, zt), (*q, zt), (*r, zt), (*s, zt), C.TERRAIN)
    # Kerb walls between cells of different heights (the grid is padded with apron terrain).
    hp = np.pad(g.height.astype(np.float64), 1, constant_values=zt)
    fp = np.pad(g.fine, 1, constant_values=C.TERRAIN)
    for axis in (0, 1):
        a = hp[:-1, :] if axis == 0 else hp[:, :-1]
        b = hp[1:, :] if axis == 0 else hp[:, 1:]
        fa = fp[:-1, :] if axis == 0 else fp[:, :-1]
        fb = fp[1:, :] if axis == 0 else fp[:, 1:]
        diff = np.abs(a - b) > 1e-4
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        f_hi = np.where(a > b, fa, fb)
        key = np.where(
            diff,
            f_hi.astype(np.int64) * 10**10
            + np.round(lo * 1000).astype(np.int64) * 10**5
            + np.round(hi * 1000).astype(np.int64),
            -1,
        )
        # Edge (e, k): between padded cells e and e+1 along ``axis``; k runs along the other axis.
        key = key if axis == 0 else key.T
        for e in range(key.shape[0]):
            for k0, k1, val in _runs(key[e]):
                if val < 0:
                    continue
                f, lo_z, hi_z = val // 10**10, (val // 10**5 % 10**5) / 1000.0, (val % 10**5) / 1000.0
                # Padded index e+1 is the first cell after the edge -> edge coordinate e (unpadded).
                c = (x0 if axis == 0 else y0) + e * CELL
                o0 = (y0 if axis == 0 else x0) + (k0 - 1) * CELL
                o1 = (y0 if axis == 0 else x0) + (k1 - 1) * CELL
                if axis == 0:
                    quad((c, o0, lo_z), (c, o1, lo_z), (c, o1, hi_z), (c, o0, hi_z), f)
                else:
                    quad((o0, c, lo_z), (o1, c, lo_z), (o1, c, hi_z), (o0, c, hi_z), f)
    return np.array(verts, np.float64), np.array(tris, np.int64), np.array(fine, np.uint8)


def static_mesh(world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground plus static boxes: vertices [V, 3], indices [T, 3], fine class per triangle [T]."""
    gv, gt, gf = ground_mesh(world)
    bv, bt, owner = box_triangles(world.static)
    return (
        np.concatenate([gv, bv]),
        np.concatenate([gt, bt + len(gv)]),
        np.concatenate([gf, world.static.fine[owner]]),
    )


def agent_local_mesh(world: World) -> tuple[np.ndarray, ...]:
    """All agents' parts in their own frames: vertices [V, 3], indices [T, 3], fine class [T],
    agent index per triangle [T] and per vertex [V]."""
    verts, tris, fine, agent, vert_agent = [], [], [], [], []
    base = 0
    for k, a in enumerate(world.agents):
        v, t, owner = box_triangles(a.parts)
        verts.append(v)
        tris.append(t + base)
        fine.append(a.parts.fine[owner])
        agent.append(np.full(len(t), k))
        vert_agent.append(np.full(len(v), k))
        base += len(v)
    if not verts:
        return (
            np.zeros((0, 3)),
            np.zeros((0, 3), np.int64),
            np.zeros(0, np.uint8),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
    return (
        np.concatenate(verts),
        np.concatenate(tris),
        np.concatenate(fine),
        np.concatenate(agent),
        np.concatenate(vert_agent),
    )
