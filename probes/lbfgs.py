"""Batched L-BFGS: many independent smooth convex problems at once, one history and one line search each.

Parameters are (blocks, problems, k, d1) tensors; `objective(theta, sel)` returns (loss, gradient) of the problems
`sel` (all if None), `precondition(r, sel)` applies a fixed positive definite approximation of each problem's
inverse Hessian. Problems that converge (largest gradient entry <= tol) stop moving, and once at most 3/4 of the
working set is still running the converged ones are dropped from it, so the batch shrinks to the slow problems.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Objective = Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]]  # (theta, sel) -> (loss, gradient)
Precondition = Callable[[Tensor, Tensor | None], Tensor]  # (r, sel) -> M r


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-problem inner product of (blocks, problems, k, d1) tensors."""
    return torch.linalg.vecdot(a.flatten(-2), b.flatten(-2))


def _gmax(g: Tensor) -> Tensor:
    return g.abs().flatten(-2).amax(-1)


def lbfgs(
    obj: Objective, precond: Precondition, theta: Tensor, *, tol: float, max_iter: int, history: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Minimise every problem of `obj` from `theta`; returns (theta, gradient, iterations, stalled).

    L-BFGS with the initial inverse Hessian gamma * M (M the preconditioner, gamma = s.y / y.My of the latest
    pair); M y is kept with each pair (M applied once per iteration, to the new gradient). The line search starts
    at step 1 and accepts a step that satisfies Armijo's condition or whose directional derivative at the trial
    point is still <= 0 (for a convex objective that proves a decrease, and unlike a difference of float32
    losses it stays exact near the optimum); otherwise it backtracks to the secant root of the derivative.
    Problems whose every block has converged are dropped from the working set (a problem is evaluated on all
    blocks while any of them is still running).
    """
    B, P = theta.shape[:2]
    idx = torch.arange(P, device=theta.device)  # the problems in the working set
    f, g = obj(theta, None)
    mg = precond(g, None)
    done = _gmax(g) <= tol
    out_theta, out_g = theta.clone(), g.clone()
    n_iter = torch.zeros(B, P, dtype=torch.long, device=theta.device)
    stalled = torch.zeros(B, P, dtype=torch.bool, device=theta.device)
    hist: list[list[Tensor]] = []  # [s, y, M y, rho] per pair
    gamma = torch.ones_like(f)
    for _ in range(max_iter):
        live = (~done).any(0)
        if not bool(live.any()):
            break
        if int(live.sum()) <= 0.75 * len(idx):  # shrink the working set to the problems still running
            out_theta[:, idx], out_g[:, idx] = theta, g
            keep = live.nonzero()[:, 0]
            idx = idx[keep]
            theta, f, g, mg, done, gamma = (x[:, keep] for x in (theta, f, g, mg, done, gamma))
            hist = [[x[:, keep] for x in pair] for pair in hist]
        q, mq, alphas = g.clone(), mg.clone(), []
        for s, y, my, r in reversed(hist):
            a = (r * _dot(s, q))[..., None, None]
            q.addcmul_(a, y, value=-1)
            mq.addcmul_(a, my, value=-1)
            alphas.append(a)
        z = mq.mul_(gamma[..., None, None])
        for (s, y, _, r), a in zip(hist, reversed(alphas), strict=True):
            z.addcmul_(a - (r * _dot(y, z))[..., None, None], s)
        running = (~done)[..., None, None]
        direction = z.neg_().mul_(running)
        gd = _dot(g, direction)
        bad = (gd >= 0) & ~done  # not a descent direction (should not happen): the preconditioned gradient
        if bool(bad.any()):
            direction = torch.where(bad[..., None, None], -mg, direction) * running
            gd = _dot(g, direction)
        theta_new, f_new, g_new, stalled_now = _line_search(obj, idx, theta, f, g, gd, direction, done)
        stalled[:, idx] |= stalled_now
        moved = (~done).any(0).nonzero()[:, 0]
        mg_new = mg.clone()
        mg_new[:, moved] = precond(g_new[:, moved], idx[moved])
        s, y, my = theta_new - theta, g_new - g, mg_new - mg
        sy, ymy = _dot(s, y), _dot(y, my)
        good = (sy > 1e-10 * torch.sqrt(_dot(s, s) * _dot(y, y))) & (ymy > 0)
        one = torch.ones_like(sy)
        hist.append([s, y, my, torch.where(good, 1.0 / sy.where(good, one), torch.zeros_like(sy))])
        gamma = torch.where(good, sy / ymy.where(good, one), gamma)
        if len(hist) > history:
            hist.pop(0)
        n_iter[:, idx] += (~done).long()
        theta, f, g, mg = theta_new, f_new, g_new, mg_new
        done = done | (_gmax(g) <= tol) | stalled_now
    out_theta[:, idx], out_g[:, idx] = theta, g
    return out_theta, out_g, n_iter, stalled


def _line_search(
    obj: Objective, idx: Tensor, theta: Tensor, f: Tensor, g: Tensor, gd: Tensor, direction: Tensor, done: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(theta, loss, gradient) after a step along `direction` for every problem not `done`, and which stalled."""
    t = torch.ones_like(f)
    accepted = done.clone()
    theta_new, f_new, g_new = theta, f, g
    for attempt in range(30):
        sel = (~accepted).any(0).nonzero()[:, 0]
        full = len(sel) == theta.shape[1]
        def pick(x: Tensor, full: bool = full, sel: Tensor = sel) -> Tensor:
            return x if full else x[:, sel]

        ts, ds, pend, f0, gd0 = pick(t), pick(direction), ~pick(accepted), pick(f), pick(gd)
        trial = pick(theta) + ts[..., None, None] * ds
        ft, gt = obj(trial, idx if full else idx[sel])
        gdt = _dot(gt, ds)
        ok = ((ft <= f0 + 1e-4 * ts * gd0) | (gdt <= 0)) & torch.isfinite(ft) & pend
        okx = ok[..., None, None]
        if attempt == 0 and full:
            theta_new, f_new, g_new = torch.where(okx, trial, theta), torch.where(ok, ft, f), torch.where(okx, gt, g)
        else:
            if attempt == 0:
                theta_new, f_new, g_new = theta.clone(), f.clone(), g.clone()
            theta_new[:, sel] = torch.where(okx, trial, theta_new[:, sel])
            f_new[:, sel] = torch.where(ok, ft, f_new[:, sel])
            g_new[:, sel] = torch.where(okx, gt, g_new[:, sel])
        if full:
            accepted |= ok
        else:
            accepted[:, sel] |= ok
        if bool(accepted.all()):
            break
        secant = ts * (-gd0) / (gdt - gd0).clamp_min(torch.finfo(ts.dtype).tiny)
        secant = torch.where(torch.isfinite(secant) & torch.isfinite(ft), secant, 0.1 * ts)
        shorter = torch.where(ok | ~pend, ts, torch.minimum(torch.maximum(secant, 0.1 * ts), 0.9 * ts))
        if full:
            t = shorter
        else:
            t[:, sel] = shorter
    return theta_new, f_new, g_new, ~accepted
