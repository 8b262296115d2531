"""Trajectories: a planar path (dense polyline) travelled with a speed profile."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Path:
    """A planar path sampled densely, parameterised by arc length.

    Attributes:
        s: [K] arc length of each sample, metres (starts at 0, increasing).
        xy: [K, 2] positions, metres.
        heading: [K] tangent direction, radians (unwrapped).
    """

    s: np.ndarray
    xy: np.ndarray
    heading: np.ndarray

    @staticmethod
    def from_points(xy: np.ndarray) -> Path:
        xy = np.asarray(xy, np.float64)
        seg = np.diff(xy, axis=0)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
        # Headings at samples: average of adjacent segment headings (ends: their segment).
        hs = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
        h = np.concatenate([hs[:1], 0.5 * (hs[:-1] + hs[1:]), hs[-1:]])
        return Path(s, xy, h)

    @staticmethod
    def from_segments(start, heading: float, segments, step: float = 0.05) -> Path:
        """Build a path from ``("line", length)`` and ``("arc", radius, angle)`` segments.

        ``angle`` > 0 turns left (counter-clockwise).
        """
        pts = [np.asarray(start, np.float64)]
        h = float(heading)
        for seg in segments:
            if seg[0] == "line":
                n = max(int(np.ceil(seg[1] / step)), 1)
                d = np.linspace(0, seg[1], n + 1)[1:]
                pts.extend(pts[-1] + d[:, None] * np.array([np.cos(h), np.sin(h)]))
            elif seg[0] == "arc":
                radius, angle = seg[1], seg[2]
                n = max(int(np.ceil(abs(angle) * radius / step)), 2)
                sign = np.sign(angle)
                centre = pts[-1] + radius * np.array(
                    [np.cos(h + sign * np.pi / 2), np.sin(h + sign * np.pi / 2)]
                )
                a0 = h - sign * np.pi / 2
                a = a0 + np.linspace(0, angle, n + 1)[1:]
                pts.extend(centre + radius * np.stack([np.cos(a), np.sin(a)], 1))
                h += angle
            else:
                raise ValueError(f"unknown path segment {seg[0]!r}")
        return Path.from_points(np.stack(pts))

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position [..., 2] and heading [...] at arc length ``s`` (linear extrapolation past the ends)."""
        s = np.asarray(s, np.float64)
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        h = np.interp(s, self.s, self.heading)
        for end, idx in ((s < 0, 0), (s > self.s[-1], -1)):
            if np.any(end):
                ds = (s - self.s[idx])[end]
                x = np.where(end, self.xy[idx, 0] + 0 * s, x)
                y = np.where(end, self.xy[idx, 1] + 0 * s, y)
                x[end] += ds * np.cos(self.heading[idx])
                y[end] += ds * np.sin(self.heading[idx])
                h = np.where(end, self.heading[idx], h)
        return np.stack([x, y], -1), h


@dataclass(frozen=True)
class SpeedProfile:
    """Distance travelled along a path over time: wait until ``t0``, then move from ``s0`` with speed
    ``v0`` and constant acceleration ``accel`` (speed clipped to [0, ``v_max``]); stop at ``s_max``."""

    s0: float = 0.0
    v0: float = 0.0
    accel: float = 0.0
    t0: float = 0.0
    v_max: float = 40.0
    s_max: float = np.inf

    def at(self, t) -> tuple[np.ndarray, np.ndarray]:
        """Arc length [...] and speed [...] at times ``t`` (seconds)."""
        t = np.asarray(t, np.float64)
        tau = np.maximum(t - self.t0, 0.0)
        v0, a = self.v0, self.accel
        if a > 0:
            t_cap = max((self.v_max - v0) / a, 0.0)
        elif a < 0:
            t_cap = v0 / -a
        else:
            t_cap = np.inf
        tc = np.minimum(tau, t_cap)
        s = v0 * tc + 0.5 * a * tc**2
        v = v0 + a * tc
        v_end = v0 + a * t_cap if np.isfinite(t_cap) else v0
        s = s + np.maximum(tau - t_cap, 0.0) * v_end
        v = np.where(tau > t_cap, v_end, v)
        s = self.s0 + s
        v = np.where((s >= self.s_max) | (t < self.t0), 0.0, v)
        return np.minimum(s, self.s_max), v


@dataclass(frozen=True)
class Trajectory:
    """A path, a speed profile and a constant height: the pose of a rigid object over time."""

    path: Path
    profile: SpeedProfile
    z: float = 0.0

    def state(self, t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position [..., 3], yaw [...] and velocity [..., 3] (m/s) at times ``t`` (seconds)."""
        s, v = self.profile.at(t)
        xy, h = self.path.at(s)
        pos = np.concatenate([xy, np.full(xy.shape[:-1] + (1,), self.z)], -1)
        vel = np.stack([v * np.cos(h), v * np.sin(h), np.zeros_like(v)], -1)
        return pos, h, vel
