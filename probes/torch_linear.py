"""Many L2 logistic regressions at once in torch: the objective scikit-learn's lbfgs minimises, solved in a batch.

Problem p of block b (a block is one design matrix, e.g. one layer's residuals) sees the rows i with weight
w_pi = 1 (its training rows), features z_i = (X_b[i] - mean_bp) / scale_bp and class codes y_pi. It minimises
scikit-learn's objective (`sklearn.linear_model._logistic._logistic_regression_path`, lbfgs):

    f(W, c) = sum_i w_pi * loss(W z_i + c, y_pi) / n_p + ||W||^2 / (2 C_p n_p),      n_p = sum_i w_pi

- two classes present: scikit-learn's binary model, one logit (the second class), loss = log(1 + e^s) - y s;
- three or more: softmax cross-entropy over the classes present (absent ones get no logit), solved in the
  subspace of coefficient rows and intercepts that sum to zero over them, the only place its optimum can be;
- one class: nothing to fit (a zero model).
The intercept c is not penalised.

The solver (`probes.lbfgs`) is L-BFGS with one history and one line search per problem, preconditioned by the
inverse Hessian at zero, (curvature * Cov(X_b) + 1/(C_p n_p))^-1 (curvature 1/4 binary, 1/K multinomial), from one
eigendecomposition per block: the first step is the exact Newton step of the centred problem, and the iteration
count no longer depends on how anisotropic the residual stream is. A problem stops when its largest gradient
entry is <= `tol` (scikit-learn's criterion, whose default there is 1e-4).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from probes.lbfgs import lbfgs

log = logging.getLogger(__name__)

_NEG = -1e30  # logit of a class a problem never saw (finite, so 0 * it stays 0)


@dataclass(frozen=True)
class TorchSolver:
    """How the torch probes are solved.

    `device`, `dtype` (float32, or float64 for exact comparisons); `tol` bounds the largest gradient entry of the
    objective above, the quantity scikit-learn's `tol` bounds (1e-4 there; 1e-6 here lands within ~1e-3 of the
    optimum's probabilities, close enough that per-question answers and the chosen C match it even on
    near-separable 60-question probes, where 1e-5 let CV near-ties flip);
    `max_iter`, `history` (L-BFGS pairs, scipy's default 10); `layer_batch` layers solved as one batch (0: as
    many as keep a batch's training features under `batch_mb` MiB); `threads`: torch CPU threads during the solve
    (1, like the scikit-learn path, which contended 2-core machines run fastest with; 0: leave torch's setting).
    """

    device: str = "cpu"
    dtype: str = "float32"
    tol: float = 1e-6
    max_iter: int = 1000
    history: int = 10
    layer_batch: int = 0
    batch_mb: int = 256
    threads: int = 1

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if (self.tol <= 0 or self.max_iter < 1 or self.history < 1 or self.layer_batch < 0 or self.batch_mb < 1
                or self.threads < 0):
            raise ValueError(f"bad solver options: {self}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    @contextlib.contextmanager
    def execution(self) -> Iterator[None]:
        """Run the body with full-precision float32 matmuls (no TF32 / reduced-precision shortcuts, which would
        leave gradients too noisy for `tol`) and, on the CPU, `threads` torch threads; restore both after."""
        threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        if self.threads and torch.device(self.device).type == "cpu":
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.set_float32_matmul_precision(precision)

    def layers_per_batch(self, rows: int, d: int) -> int:
        """Layers per batched solve for layers of `rows` training rows and `d` features."""
        if self.layer_batch:
            return self.layer_batch
        per_layer = rows * d * torch.finfo(self.torch_dtype).bits // 8
        return max(1, self.batch_mb * 2**20 // max(per_layer, 1))


@dataclass
class BatchFit:
    """Solutions in each problem's standardised coordinates. Binary batches: row 0 is the second class's logit;
    multinomial: row k is class code k (absent classes 0; a problem with two classes present has the first one's
    row at 0, as scikit-learn's binary model). `grad_max` is the largest gradient entry in the parameters."""

    coef: Float[Tensor, "blocks problems k d"]
    intercept: Float[Tensor, "blocks problems k"]
    n_iter: Int[Tensor, "blocks problems"]
    grad_max: Float[Tensor, "blocks problems"]
    converged: Bool[Tensor, "blocks problems"]


class Objective:
    """Loss and gradient of every problem of the batch, in parameters theta = [W | c], (blocks, problems, k, d + 1).

    Binary: k = 1, the second class's logit. Multinomial: the class logits are Q_p theta with Q_p (classes, k) an
    orthonormal basis of the vectors over problem p's present classes that sum to zero (k = classes - 1). Those
    are the only solutions scikit-learn's objective has (its penalty makes the coefficient rows sum to zero; its
    intercepts sum to zero from a zero start), ||W||^2 is unchanged by Q_p, absent classes get no logit, and a
    problem with two present classes becomes scikit-learn's binary model (Q_p = the second class's unit vector).
    """

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
        hot = torch.nn.functional.one_hot(codes, max(n_classes, 2)).to(torch.bool)  # (problems, rows, classes)
        present = (hot & (weight > 0)[..., None]).any(1)
        self.n_present = present.sum(1)
        if self.binary:
            self.y = codes.T.to(X.dtype)  # (rows, problems)
            self.free = (self.n_present == 2)[:, None].to(X.dtype)  # (problems, 1)
        else:
            self.Q = sum_zero_basis(present).to(X.dtype)  # (problems, classes, classes - 1)
            self.absent = ~present
            self.onehot = hot.transpose(0, 1).to(X.dtype)  # (rows, problems, classes)
            self.codes_t = codes.T.contiguous()

    @property
    def k(self) -> int:
        return 1 if self.binary else self.Q.shape[2]

    @property
    def curvature(self) -> Float[Tensor, " problems"]:
        """The Hessian of the data term at zero is curvature * Cov (on sum-zero columns for the multinomial)."""
        two = self.n_present <= 2
        return torch.where(two, 0.25, 1.0 / self.n_present.clamp_min(1)).to(self.X.dtype)

    def to_classes(self, theta: Float[Tensor, "blocks problems k d1"]) -> Float[Tensor, "blocks problems kc d1"]:
        """Parameters -> one row per class (binary: unchanged, the second class's row)."""
        return theta * self.free[None, :, :, None] if self.binary else torch.einsum("bpjd,pkj->bpkd", theta, self.Q)

    def from_classes(self, rows: Float[Tensor, "blocks problems kc d1"]) -> Float[Tensor, "blocks problems k d1"]:
        """One row per class -> parameters (the projection onto what the problem can fit)."""
        return rows * self.free[None, :, :, None] if self.binary else torch.einsum("bpkd,pkj->bpjd", rows, self.Q)

    def __call__(
        self, theta: Float[Tensor, "blocks sel k d1"], sel: Int[Tensor, " sel"] | None = None
    ) -> tuple[Float[Tensor, "blocks sel"], Float[Tensor, "blocks sel k d1"]]:
        """(loss, gradient) of problems `sel` (all if None) at `theta`."""
        X, B, n, d = self.X, self.X.shape[0], self.X.shape[1], self.X.shape[2]
        P, K = theta.shape[1], theta.shape[2]

        def pick(a: Tensor, dim: int) -> Tensor:
            return a if sel is None else a.index_select(dim, sel)

        mean, scale, w, reg = pick(self.mean, 1), pick(self.scale, 1), pick(self.w, 1), pick(self.reg, 0)
        W, c = theta[..., :d], theta[..., d]
        V = W / scale[:, :, None, :]
        offset = c - (V * mean[:, :, None, :]).sum(-1)  # (B, P, K)
        S = torch.bmm(X, V.reshape(B, P * K, d).transpose(1, 2)).view(B, n, P, K) + offset[:, None]
        if self.binary:
            y = pick(self.y, 1)
            s = S[..., 0]
            loss = (torch.nn.functional.softplus(s) - y * s) * w
            R = ((torch.sigmoid(s) - y) * w)[..., None] * pick(self.free, 0)
        else:
            Q = pick(self.Q, 0)
            S = torch.einsum("bnpj,pkj->bnpk", S, Q).masked_fill(pick(self.absent, 0)[None, None], _NEG)
            lse = torch.logsumexp(S, -1)
            picked = S.gather(-1, pick(self.codes_t, 1)[None, :, :, None].expand(B, n, P, 1))[..., 0]
            loss = (lse - picked) * w
            R = torch.einsum("bnpk,pkj->bnpj", (torch.exp(S - lse[..., None]) - pick(self.onehot, 1)) * w[..., None], Q)
        f = loss.sum(1) + 0.5 * reg * W.square().sum((-1, -2))
        sum_r = R.sum(1)  # (B, P, K)
        GV = torch.bmm(R.reshape(B, n, P * K).transpose(1, 2), X).view(B, P, K, d)
        gW = (GV - mean[:, :, None, :] * sum_r[..., None]) / scale[:, :, None, :] + W * reg[None, :, None, None]
        return f, torch.cat([gW, sum_r[..., None]], -1)


def sum_zero_basis(present: Bool[Tensor, "problems classes"]) -> Float[Tensor, "problems classes k"]:
    """Per problem, orthonormal columns spanning the vectors over its present classes that sum to zero (Helmert
    contrasts; two classes present: the second one's unit vector, scikit-learn's binary model; one: none), padded
    with zero columns to k = classes - 1."""
    P, K = present.shape
    Q = torch.zeros(P, K, K - 1, dtype=torch.float64)
    for p in range(P):
        idx = present[p].nonzero()[:, 0].tolist()
        if len(idx) == 2:
            Q[p, idx[1], 0] = 1.0
        for j in range(1, len(idx) if len(idx) > 2 else 0):
            Q[p, idx[:j], j - 1] = 1.0 / (j * (j + 1)) ** 0.5
            Q[p, idx[j], j - 1] = -j / (j * (j + 1)) ** 0.5
    return Q.to(present.device)


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
        obj.from_classes(init)
    theta, g, n_iter, stalled = lbfgs(obj, precond, theta0, tol=tol, max_iter=max_iter, history=history)
    grad_max = g.abs().flatten(-2).amax(-1)
    converged = grad_max <= tol
    if not bool(converged.all()):
        log.warning("%d of %d logistic problems stopped above tol %.1e (largest gradient entry %.2e; %d stalled "
                    "in the line search, the rest hit max_iter %d)", int((~converged).sum()), converged.numel(),
                    tol, float(grad_max.max()), int((stalled & ~converged).sum()), max_iter)
    rows = obj.to_classes(theta)
    return BatchFit(rows[..., :d], rows[..., d], n_iter, grad_max, converged)
