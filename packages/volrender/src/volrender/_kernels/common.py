"""Warp helper functions shared by the ray kernels, built for one scalar type (private)."""

import functools
from types import SimpleNamespace

import warp as wp


@functools.cache
def helpers(scalar) -> SimpleNamespace:
    """``@wp.func`` helpers for ``scalar`` (``wp.float32`` or ``wp.float64``).

    ``expm1`` (Kahan's accurate form), ``sigmoid``, ``cell``/``frac`` (clamped base index and
    fraction of a continuous vertex coordinate), ``lerp3`` (trilinear read at a flat base index with
    strides ``sx``, ``sy`` and unit z stride), ``lerp_at`` (the same at continuous vertex coordinates
    ``(ux, uy, uz)``, clamped onto the grid) and ``scatter3`` (the adjoint of ``lerp3``, with
    ``atomic_add``).
    """
    zero = scalar(0.0)
    one = scalar(1.0)

    @wp.func
    def expm1(x: scalar) -> scalar:
        # Kahan's accurate exp(x) - 1.
        u = wp.exp(x)
        if u == one:
            return x
        um1 = u - one
        if um1 == -one:
            return -one
        return um1 * x / wp.log(u)

    @wp.func
    def sigmoid(x: scalar) -> scalar:
        return one / (one + wp.exp(-x))

    @wp.func
    def cell(u: scalar, n: int) -> int:
        uc = wp.clamp(u, zero, scalar(n - 1))
        return wp.min(int(wp.floor(uc)), n - 2)

    @wp.func
    def frac(u: scalar, n: int, i: int) -> scalar:
        return wp.clamp(u, zero, scalar(n - 1)) - scalar(i)

    @wp.func
    def lerp3(f: wp.array(dtype=scalar), o: int, sx: int, sy: int, fx: scalar, fy: scalar,
              fz: scalar) -> scalar:
        c00 = f[o] * (one - fz) + f[o + 1] * fz
        c01 = f[o + sy] * (one - fz) + f[o + sy + 1] * fz
        c10 = f[o + sx] * (one - fz) + f[o + sx + 1] * fz
        c11 = f[o + sx + sy] * (one - fz) + f[o + sx + sy + 1] * fz
        return (c00 * (one - fy) + c01 * fy) * (one - fx) + (c10 * (one - fy) + c11 * fy) * fx

    @wp.func
    def lerp_at(f: wp.array(dtype=scalar), base: int, sx: int, sy: int, nx: int, ny: int, nz: int,
                ux: scalar, uy: scalar, uz: scalar) -> scalar:
        i = cell(ux, nx)
        j = cell(uy, ny)
        k = cell(uz, nz)
        return lerp3(f, base + i * sx + j * sy + k, sx, sy, frac(ux, nx, i), frac(uy, ny, j), frac(uz, nz, k))

    @wp.func
    def scatter3(g: wp.array(dtype=scalar), o: int, sx: int, sy: int, fx: scalar, fy: scalar, fz: scalar,
                 v: scalar):
        a0 = v * (one - fx)
        a1 = v * fx
        a00 = a0 * (one - fy)
        a01 = a0 * fy
        a10 = a1 * (one - fy)
        a11 = a1 * fy
        wp.atomic_add(g, o, a00 * (one - fz))
        wp.atomic_add(g, o + 1, a00 * fz)
        wp.atomic_add(g, o + sy, a01 * (one - fz))
        wp.atomic_add(g, o + sy + 1, a01 * fz)
        wp.atomic_add(g, o + sx, a10 * (one - fz))
        wp.atomic_add(g, o + sx + 1, a10 * fz)
        wp.atomic_add(g, o + sx + sy, a11 * (one - fz))
        wp.atomic_add(g, o + sx + sy + 1, a11 * fz)

    return SimpleNamespace(expm1=expm1, sigmoid=sigmoid, cell=cell, frac=frac, lerp3=lerp3, lerp_at=lerp_at,
                           scatter3=scatter3)
