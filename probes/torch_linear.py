"""Many L2 logistic regressions at once in torch: the objective scikit-learn's lbfgs minimises, solved in a batch.

Problem p of block b (a block is one design matrix, e.g. one layer's residuals) sees the rows i with weight
w_pi = 1 (its training rows), features z_i = (X_b[i] - mean_bp) / scale_bp and class codes y_pi. It minimises
scikit-learn's objective (`sklearn.linear_model._logistic._logistic_regression_path`, lbfgs):

    f(W, c) = sum_i w_pi * loss(W z_i + c, y_pi) / n_p + ||W||^2 / (2 C_p n_p),      n_p = sum_i w_pi

- binary (two classes present): one logit column (the second class), loss = log(1 + e^s) - y s;
- multinomial (three or more): one column per class present, softmax cross-entropy; absent classes are masked.
The intercept c is not penalised. One class present: nothing to fit (all columns pinned at zero).

The solver is L-BFGS with one history per problem and a per-problem line search, preconditioned by the inverse of
the Hessian at zero, (curvature * Cov(X_b) + 1/(C_p n_p))^-1 (curvature 1/4 binary, 1/K multinomial), from one
eigendecomposition of each block's feature covariance: the first step is the exact Newton step of a centred
problem, and the iterations no longer depend on how anisotropic the residual stream is. It stops a problem when
the largest gradient entry is <= `tol` (scikit-learn's criterion, whose default there is 1e-4).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

log = logging.getLogger(__name__)

_NEG = -1e30  # logit of a class a problem never saw (finite, so 0 * it stays 0)


@dataclass(frozen=True)
class TorchSolver:
    """How the torch probes are solved: device, dtype, stopping tolerance (largest gradient entry of the
    objective above, the quantity scikit-learn's `tol` bounds), iteration cap, L-BFGS history, and how many layers
    are solved as one batch (0: as many as keep the batch's training features under `batch_mb` MiB)."""

    device: str = "cpu"
    dtype: str = "float32"
    tol: float = 1e-6
    max_iter: int = 1000
    history: int = 10
    layer_batch: int = 0
    batch_mb: int = 256

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.tol <= 0 or self.max_iter < 1 or self.history < 1 or self.layer_batch < 0 or self.batch_mb < 1:
            raise ValueError(f"bad solver options: {self}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    def layers_per_batch(self, rows: int, d: int) -> int:
        """Layers per batched solve for layers of `rows` training rows and `d` features."""
        if self.layer_batch:
            return self.layer_batch
        per_layer = rows * d * torch.finfo(self.torch_dtype).bits // 8
        return max(1, self.batch_mb * 2**20 // max(per_layer, 1))


@dataclass
class BatchFit:
    """Solutions in each problem's standardised coordinates. Binary problems: column 0 is the second class's
    logit; multinomial: column k is class code k (absent classes 0). `grad_max` is the largest gradient entry."""

    coef: Float[Tensor, "blocks problems k d"]
    intercept: Float[Tensor, "blocks problems k"]
    n_iter: Int[Tensor, "blocks problems"]
    grad_max: Float[Tensor, "blocks problems"]
    converged: Bool[Tensor, "blocks problems"]


class Objective:
    """Loss and gradient of every problem of the batch; parameters theta = [W | c], (blocks, problems, k, d + 1)."""

    def __init__(
        self,
        X: Float[Tensor, "blocks rows d"],
        codes: Int[Tensor, "problems rows"],
        weight: Float[Tensor, "problems rows"],
        C: Float[Tensor, " problems"],
        mean: Float[Tensor, "blocks problems d"],
        scale: Float[Tensor, "blocks problems d"],
        n_classes: int,
    ) -> None:
        self.X, self.mean, self.scale = X, mean, scale
        self.binary = n_classes <= 2
        n_p = weight.sum(1)
        self.w = (weight / n_p[:, None]).T  # (rows, problems)
        self.reg = 1.0 / (C * n_p)  # (problems,)
        hot = torch.nn.functional.one_hot(codes, max(n_classes, 2)).to(torch.bool)  # (problems, rows, k)
        present = (hot & (weight > 0)[..., None]).any(1)
        self.n_present = present.sum(1)
        if self.binary:
            self.y = codes.T.to(X.dtype)  # (rows, problems)
            self.free = (self.n_present == 2)[:, None]  # (problems, 1)
        else:
            first = present.to(torch.int8).argmax(1)
            self.free = present.clone()
            two = self.n_present == 2  # two classes present: scikit-learn fits a binary model (first class at 0)
            self.free[two, first[two]] = False
            self.free[self.n_present < 2] = False
            self.absent = ~present
            self.onehot = hot.transpose(0, 1).to(X.dtype)  # (rows, problems, k)
            self.codes_t = codes.T.contiguous()

    @property
    def k(self) -> int:
        return self.free.shape[1]

    @property
    def curvature(self) -> Float[Tensor, " problems"]:
        """The Hessian of the data term at zero is curvature * Cov (on sum-zero columns for the multinomial)."""
        two = self.n_present <= 2
        return torch.where(two, 0.25, 1.0 / self.n_present.clamp_min(1)).to(self.X.dtype)

    def __call__(
        self, theta: Float[Tensor, "blocks sel k d1"], sel: Int[Tensor, " sel"] | None = None
    ) -> tuple[Float[Tensor, "blocks sel"], Float[Tensor, "blocks sel k d1"]]:
        """(loss, gradient) of problems `sel` (all if None) at `theta`."""
        X, B, n, d = self.X, self.X.shape[0], self.X.shape[1], self.X.shape[2]
        P, K = theta.shape[1], theta.shape[2]
        pick = (lambda a, dim: a) if sel is None else (lambda a, dim: a.index_select(dim, sel))
        mean, scale, w, reg, free = pick(self.mean, 1), pick(self.scale, 1), pick(self.w, 1), pick(self.reg, 0), \
            pick(self.free, 0)
        W, c = theta[..., :d], theta[..., d]
        V = W / scale[:, :, None, :]
        offset = c - (V * mean[:, :, None, :]).sum(-1)  # (B, P, K)
        S = torch.bmm(X, V.reshape(B, P * K, d).transpose(1, 2)).view(B, n, P, K) + offset[:, None]
        if self.binary:
            y = pick(self.y, 1)
            s = S[..., 0]
            loss = (torch.nn.functional.softplus(s) - y * s) * w
            R = ((torch.sigmoid(s) - y) * w)[..., None]
        else:
            S = S.masked_fill(pick(self.absent, 0)[None, None], _NEG)
            lse = torch.logsumexp(S, -1)
            picked = S.gather(-1, pick(self.codes_t, 1)[None, :, :, None].expand(B, n, P, 1))[..., 0]
            loss = (lse - picked) * w
            R = (torch.exp(S - lse[..., None]) - pick(self.onehot, 1)) * w[..., None]
        f = loss.sum(1) + 0.5 * reg * W.square().sum((-1, -2))
        sum_r = R.sum(1)  # (B, P, K)
        GV = torch.bmm(R.reshape(B, n, P * K).transpose(1, 2), X).view(B, P, K, d)
        gW = (GV - mean[:, :, None, :] * sum_r[..., None]) / scale[:, :, None, :] + W * reg[None, :, None, None]
        g = torch.cat([gW, sum_r[..., None]], -1) * free[None, :, :, None]
        return f, g


class Preconditioner:
    """theta -> (curvature * Cov + reg)^-1 theta on the weights, theta / curvature on the intercepts; Cov is the
    feature covariance of each block (evenly spaced rows, standardised like its problem 0). With fewer rows m than
    features it comes from the m x m Gram matrix (Cov has rank < m; the rest of the space gets 1 / reg)."""

    def __init__(
        self, X: Float[Tensor, "blocks rows d"], scale: Float[Tensor, "blocks problems d"], curvature: Tensor,
        reg: Tensor, max_rows: int = 2048,
    ) -> None:
        Xs = X[:, :: max(1, X.shape[1] // max_rows)] / scale[:, :1]
        Xs = Xs - Xs.mean(1, keepdim=True)
        m, d = Xs.shape[1], Xs.shape[2]
        if m < d:
            lam, E = torch.linalg.eigh(Xs @ Xs.transpose(1, 2) / m)  # float32 is enough for a preconditioner
            lam = torch.where(lam > 1e-6 * lam.amax(-1, keepdim=True), lam, torch.zeros_like(lam))
            self.V = Xs.transpose(1, 2) @ E / torch.sqrt(m * lam).where(lam > 0, torch.ones_like(lam))[:, None]
            self.V = self.V * (lam > 0)[:, None]
        else:
            lam, self.V = torch.linalg.eigh(Xs.transpose(1, 2) @ Xs / m)
            lam = lam.clamp_min(0)
        self.base = 1.0 / reg  # (P,)
        self.extra = 1.0 / (curvature[None, :, None] * lam[:, None, :] + reg[None, :, None]) - self.base[None, :, None]
        self.inv_c = 1.0 / curvature

    def __call__(
        self, r: Float[Tensor, "blocks sel k d1"], sel: Int[Tensor, " sel"] | None = None
    ) -> Float[Tensor, "blocks sel k d1"]:
        extra, base, inv_c = (self.extra, self.base, self.inv_c) if sel is None else (
            self.extra.index_select(1, sel), self.base.index_select(0, sel), self.inv_c.index_select(0, sel))
        B, P, K, d1 = r.shape
        rW = r[..., :-1]
        t = torch.bmm(rW.reshape(B, P * K, d1 - 1), self.V).view(B, P, K, -1) * extra[:, :, None, :]
        t = torch.bmm(t.view(B, P * K, -1), self.V.transpose(1, 2)).view(B, P, K, d1 - 1)
        return torch.cat([t + rW * base[None, :, None, None], r[..., -1:] * inv_c[None, :, None, None]], -1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-problem inner product of (blocks, problems, k, d1) tensors."""
    return torch.linalg.vecdot(a.flatten(-2), b.flatten(-2))


def _gmax(g: Tensor) -> Tensor:
    return g.abs().flatten(-2).amax(-1)


def lbfgs(
    obj: Objective, precond: Preconditioner, theta: Tensor, *, tol: float, max_iter: int, history: int
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
    f, g = obj(theta)
    mg = precond(g)
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


def fit_logistic_batch(
    X: Float[Tensor, "blocks rows d"],
    codes: Int[Tensor, "problems rows"],
    weight: Float[Tensor, "problems rows"],
    C: Float[Tensor, " problems"],
    mean: Float[Tensor, "blocks problems d"],
    scale: Float[Tensor, "blocks problems d"],
    *,
    n_classes: int,
    tol: float = 1e-6,
    max_iter: int = 1000,
    history: int = 10,
    init: Float[Tensor, "blocks problems k d1"] | None = None,
) -> BatchFit:
    """Fit every (block, problem) pair from `init` (zeros if None; [coef | intercept] as `BatchFit` holds them);
    all tensors on one device, floats in one dtype (that of X)."""
    if not (codes.shape == weight.shape and codes.shape[1] == X.shape[1] and C.shape == codes.shape[:1]):
        raise ValueError(f"shapes disagree: X {tuple(X.shape)}, codes {tuple(codes.shape)}, "
                         f"weight {tuple(weight.shape)}, C {tuple(C.shape)}")
    if not bool((weight.sum(1) > 0).all()):
        raise ValueError("every problem needs at least one row")
    obj = Objective(X, codes, weight, C, mean, scale, n_classes)
    precond = Preconditioner(X, scale, obj.curvature, obj.reg)
    B, P, d = X.shape[0], codes.shape[0], X.shape[2]
    theta0 = torch.zeros(B, P, obj.k, d + 1, dtype=X.dtype, device=X.device) if init is None else \
        init * obj.free[None, :, :, None]
    theta, g, n_iter, stalled = lbfgs(obj, precond, theta0, tol=tol, max_iter=max_iter, history=history)
    grad_max = g.abs().amax((-1, -2))
    converged = grad_max <= tol
    if not bool(converged.all()):
        log.warning("%d of %d logistic problems stopped above tol %.1e (largest gradient entry %.2e; %d stalled "
                    "in the line search, the rest hit max_iter %d)", int((~converged).sum()), converged.numel(),
                    tol, float(grad_max.max()), int((stalled & ~converged).sum()), max_iter)
    if not obj.binary:  # scikit-learn's multinomial intercepts sum to zero over the classes (they do from zero)
        multi = obj.free & (obj.n_present >= 3)[:, None]
        m = multi[None].to(X.dtype)
        c = theta[..., d]
        centred = (c - (c * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp_min(1)) * m
        theta[..., d] = torch.where(multi[None], centred, c)
    return BatchFit(theta[..., :d], theta[..., d], n_iter, grad_max, converged)
