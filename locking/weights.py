"""Weight diffs between checkpoints: pure numerics over parameters (what a lock or an unlock changed).

An *update* is the difference of two checkpoints' parameters, `delta = W_to - W_from`, taken in float64.
Per parameter tensor (one (layer, component) cell, named by `parse_param_name`):

- relative change `||delta||_F / ||W_from||_F`;
- the update's spectrum (2-D tensors; None for others): the top singular values; the effective rank `exp(H(p))` with
  `p = s / sum(s)` (Roy & Vetterli 2007; 1 for a rank-1 update, r for r equal singular values); the stable rank
  `||delta||_F^2 / ||delta||_2^2`; the numerical rank `#{s_i > rtol * s_1}`; the energy rank, the fewest singular
  values holding `energy` of `||delta||_F^2`;
- the cosine between two updates, flattened (1: same direction, -1: one undoes the other, ~0: unrelated).

Undefined values (a zero update's cosine) are NaN, never an error. Activation similarity is `probes.similarity`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float

# HF module names -> short component names; the first matching suffix wins.
_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("self_attn.q_proj", "attn.q"), ("self_attn.k_proj", "attn.k"), ("self_attn.v_proj", "attn.v"),
    ("self_attn.o_proj", "attn.o"), ("self_attn.q_norm", "attn.q_norm"), ("self_attn.k_norm", "attn.k_norm"),
    ("mlp.gate_proj", "mlp.gate"), ("mlp.up_proj", "mlp.up"), ("mlp.down_proj", "mlp.down"),
    ("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2"),
    ("pre_feedforward_layernorm", "ln_pre_mlp"), ("post_feedforward_layernorm", "ln_post_mlp"),
    ("attn.c_attn", "attn.qkv"), ("attn.c_proj", "attn.o"), ("mlp.c_fc", "mlp.in"), ("mlp.c_proj", "mlp.out"),
    ("ln_1", "ln1"), ("ln_2", "ln2"),
)
_GLOBALS: tuple[tuple[str, str], ...] = (
    ("embed_tokens", "embed"), ("wte", "embed"), ("wpe", "pos_embed"), ("lm_head", "unembed"),
    ("model.norm", "ln_final"), ("ln_f", "ln_final"), ("norm", "ln_final"),
)
_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class ParamKey:
    """Where a parameter sits: its layer (None outside the blocks) and a short component name."""

    name: str
    layer: int | None
    component: str


def parse_param_name(name: str) -> ParamKey:
    """`model.layers.3.self_attn.q_proj.weight` -> (3, "attn.q"); biases get ".bias"; unknown names keep their path."""
    stem, _, kind = name.rpartition(".")
    if kind not in ("weight", "bias"):
        stem, kind = name, "weight"
    suffix = ".bias" if kind == "bias" else ""
    m = _LAYER_RE.search(stem)
    if m:
        rest = m.group(2)
        comp = next((short for long, short in _COMPONENTS if rest == long or rest.endswith("." + long)), rest)
        return ParamKey(name, int(m.group(1)), comp + suffix)
    comp = next((short for long, short in _GLOBALS if stem == long or stem.endswith("." + long)), stem)
    return ParamKey(name, None, comp + suffix)


def _f64(t: torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(t).detach().to("cpu", torch.float64)


def relative_change(w_from: Float[torch.Tensor, "*shape"], w_to: Float[torch.Tensor, "*shape"]) -> float:
    """`||w_to - w_from||_F / ||w_from||_F`; 0 when both are zero, inf when only `w_from` is."""
    a, b = _f64(w_from), _f64(w_to)
    if a.shape != b.shape:
        raise ValueError(f"relative_change: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    num, den = float(torch.linalg.vector_norm(b - a)), float(torch.linalg.vector_norm(a))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def singular_values(delta: Float[torch.Tensor, "m n"]) -> Float[torch.Tensor, " r"]:
    """Singular values in float64, descending; very tall or wide matrices go through the smaller Gram matrix."""
    d = _f64(delta)
    if d.ndim != 2:
        raise ValueError(f"singular_values needs a 2-D tensor, got shape {tuple(d.shape)}")
    m, n = d.shape
    if max(m, n) > 8 * min(m, n) and max(m, n) > 4096:
        gram = d.T @ d if m > n else d @ d.T
        return torch.linalg.eigvalsh(gram).clamp(min=0).sqrt().flip(0)
    return torch.linalg.svdvals(d)


def effective_rank(s: Float[torch.Tensor, " r"]) -> float:
    """exp of the entropy of `s / sum(s)` (Roy & Vetterli 2007); 0 for all-zero `s`."""
    s = _f64(s).clamp(min=0)
    total = float(s.sum())
    if total == 0.0:
        return 0.0
    p = s[s > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass(frozen=True)
class Spectrum:
    """The spectrum of one update matrix; see the module docstring for each rank."""

    top: tuple[float, ...]
    effective_rank: float
    stable_rank: float
    numerical_rank: int
    energy_rank: int
    frobenius: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "top": list(self.top)}


def update_spectrum(
    delta: Float[torch.Tensor, "m n"], *, k: int = 8, rtol: float = 1e-4, energy: float = 0.9
) -> Spectrum:
    """Top-`k` singular values and the ranks of an update matrix (all zeros for a zero update)."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    s = singular_values(delta)
    s1 = float(s[0]) if s.numel() else 0.0
    if s1 == 0.0:
        return Spectrum(tuple(0.0 for _ in range(min(k, s.numel()))), 0.0, 0.0, 0, 0, 0.0)
    sq = s.square()
    fro2 = float(sq.sum())
    cum = torch.cumsum(sq, 0) / fro2
    energy_rank = int(torch.searchsorted(cum, torch.tensor(energy - 1e-12, dtype=cum.dtype)).item()) + 1
    return Spectrum(
        top=tuple(float(x) for x in s[:k]),
        effective_rank=effective_rank(s),
        stable_rank=fro2 / (s1 * s1),
        numerical_rank=int((s > rtol * s1).sum()),
        energy_rank=min(energy_rank, s.numel()),
        frobenius=math.sqrt(fro2),
    )


def cosine(u: torch.Tensor | np.ndarray, v: torch.Tensor | np.ndarray) -> float:
    """Cosine between two tensors flattened; NaN if either is zero."""
    a, b = _f64(u).flatten(), _f64(v).flatten()
    if a.shape != b.shape:
        raise ValueError(f"cosine: sizes differ, {a.numel()} vs {b.numel()}")
    na, nb = float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b))
    if na == 0.0 or nb == 0.0:
        return math.nan
    return float(a @ b) / (na * nb)


# ---- whole checkpoints ----


def _nan_to_none(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def weight_diff(
    states: Mapping[str, Mapping[str, torch.Tensor]],
    updates: Mapping[str, tuple[str, str]],
    *,
    cosine_pairs: Sequence[tuple[str, str]] = (),
    mean_of: Sequence[str] = (),
    k: int = 8,
    rtol: float = 1e-4,
) -> dict[str, Any]:
    """Per-parameter relative change, spectrum and cosines of named updates between checkpoints.

    `states`: label -> {parameter name: tensor}, every checkpoint with the same names and shapes.
    `updates`: update name -> (from label, to label). `cosine_pairs`: pairs of update names to compare, where
    "mean" names the average of the updates in `mean_of` (used when it has two or more).
    Returns a JSON-able dict: `params` (one record per tensor, in name order) and `totals`: whole-model relative
    change per update, the same per block (`relative_change_by_layer`, blocks 0..L-1) and whole-model cosines.
    """
    labels = list(states)
    if not labels:
        raise ValueError("weight_diff: no checkpoints")
    ref = states[labels[0]]
    for label, sd in states.items():
        if set(sd) != set(ref):
            missing, extra = sorted(set(ref) - set(sd))[:3], sorted(set(sd) - set(ref))[:3]
            raise ValueError(f"checkpoint '{label}' has other parameters than '{labels[0]}' (not the same "
                             f"architecture): missing {missing}, extra {extra}")
        for name, t in sd.items():
            if tuple(t.shape) != tuple(ref[name].shape):
                raise ValueError(f"checkpoint '{label}': parameter {name} has shape {tuple(t.shape)}, "
                                 f"'{labels[0]}' has {tuple(ref[name].shape)}")
    for uname, (src, dst) in updates.items():
        for lab in (src, dst):
            if lab not in states:
                raise ValueError(f"update '{uname}' names checkpoint '{lab}', not among {labels}")
    use_mean = len(mean_of) >= 2
    params, dot, sq = [], {p: 0.0 for p in cosine_pairs}, {u: 0.0 for u in [*updates, "mean"]}
    ref_sq = {u: 0.0 for u in updates}
    layer_sq: dict[str, dict[int, list[float]]] = {u: {} for u in updates}  # layer -> [sum |delta|^2, sum |W|^2]
    for name in sorted(ref):
        key = parse_param_name(name)
        deltas = {u: _f64(states[dst][name]) - _f64(states[src][name]) for u, (src, dst) in updates.items()}
        if use_mean:
            deltas["mean"] = torch.stack([deltas[u] for u in mean_of]).mean(0)
        rec: dict[str, Any] = {"name": name, "layer": key.layer, "component": key.component,
                               "shape": list(ref[name].shape), "updates": {}, "cosine": {}}
        for u, (src, _) in updates.items():
            base_norm = float(torch.linalg.vector_norm(_f64(states[src][name])))
            d_norm = float(torch.linalg.vector_norm(deltas[u]))
            ref_sq[u] += base_norm**2
            if key.layer is not None:
                acc = layer_sq[u].setdefault(key.layer, [0.0, 0.0])
                acc[0] += d_norm**2
                acc[1] += base_norm**2
            entry: dict[str, Any] = {"relative_change": _nan_to_none(d_norm / base_norm) if base_norm else
                                     (0.0 if d_norm == 0 else None), "norm": d_norm,
                                     "spectrum": (update_spectrum(deltas[u], k=k, rtol=rtol).to_dict()
                                                  if deltas[u].ndim == 2 else None)}
            rec["updates"][u] = entry
        for u, d in deltas.items():
            sq[u] += float(d.square().sum())
        for p in cosine_pairs:
            if all(x in deltas for x in p):
                rec["cosine"]["~".join(p)] = _nan_to_none(cosine(deltas[p[0]], deltas[p[1]]))
                dot[p] += float((deltas[p[0]] * deltas[p[1]]).sum())
        params.append(rec)
    totals: dict[str, Any] = {"relative_change": {}, "relative_change_by_layer": {}, "cosine": {}}
    for u in updates:
        totals["relative_change"][u] = _nan_to_none(math.sqrt(sq[u] / ref_sq[u])) if ref_sq[u] else None
        totals["relative_change_by_layer"][u] = [math.sqrt(d / w) if w else None
                                                 for _, (d, w) in sorted(layer_sq[u].items())]
    for p in cosine_pairs:
        if all(x in sq and (x != "mean" or use_mean) for x in p):
            den = math.sqrt(sq[p[0]] * sq[p[1]])
            totals["cosine"]["~".join(p)] = dot[p] / den if den else None
    return {"params": params, "totals": totals}


def _component_rank(comp: str) -> tuple[int, str]:
    """Heatmap column order: attention, MLP, norms as in `_COMPONENTS`, then anything else by name."""
    order = list(dict.fromkeys(short for _, short in _COMPONENTS))
    base = comp.removesuffix(".bias")
    return (order.index(base) if base in order else len(order), comp)


def _cell(p: Mapping[str, Any], value: str, update: str) -> float | None:
    if "~" in value:
        return p["cosine"].get(value)
    entry = p["updates"].get(update, {})
    return entry[value] if value in entry else (entry.get("spectrum") or {}).get(value)


def layer_component_grid(
    params: Sequence[Mapping[str, Any]], value: str, update: str
) -> tuple[list[int], list[str], Float[np.ndarray, "layers components"]]:
    """(layers, components, grid) of one per-parameter value of `weight_diff` for parameters inside the blocks.

    `value`: a cosine pair name ("u~v"), or a key of an update's entry ("relative_change", "norm") or of its
    spectrum ("effective_rank", "numerical_rank", ...) for update `update`. NaN where a cell has no value.
    """
    cells = [(p["layer"], p["component"], _cell(p, value, update)) for p in params if p["layer"] is not None]
    layers = sorted({c[0] for c in cells})
    comps = sorted(dict.fromkeys(c[1] for c in cells), key=_component_rank)
    grid = np.full((len(layers), len(comps)), np.nan)
    for layer, comp, v in cells:
        grid[layers.index(layer), comps.index(comp)] = np.nan if v is None else v
    return layers, comps, grid
