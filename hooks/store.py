"""The HDF5 activation store: its only writer and reader.

One file per capture run. One row per (question, variant) for lettered prompts, or per (question, variant, option)
for option-text prompts. Row tables sit beside the activations so several label sets can share them:

    rows/question_id, rows/variant_id      (rows,) str
    rows/option_index                      (rows,) int   -1 for lettered rows, else the DISPLAYED option position
    rows/label                             (rows,) int   lettered: gold displayed position; option: 1 if gold else 0
    rows/answer_original                   (rows,) int   gold index in the record's original order
    rows/order                             (rows, max_choices) int  displayed position -> original index (-1 pad)
    rows/n_choices, rows/n_tokens          (rows,) int
    resid                                  (rows, layers, d_model) float16 (layers = the stored resid layers)
    answer_logits                          (rows, max_choices) float32  lettered rows (NaN elsewhere)
    lens_logits                            (rows, layers, max_choices) float32  logit lens on the choice tokens
    option_logprob, option_ntokens, option_nchars   (rows,) option rows (NaN / 0 elsewhere)
    blocks_done                            (n_blocks,) bool; rows of block b are [b*block_rows, (b+1)*block_rows)

Attributes: `config` (JSON of the capture config), `config_hash`, `provenance` (JSON), `layers` (resid layer
indices: 0..n_layers-1 are each block's resid_pre, n_layers is the final resid_post before the final norm).
The file is written as `NAME.tmp` and renamed when every block is done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.schemas import ModelIdentity, from_data

ROW_FIELDS = ("question_id", "variant_id", "option_index", "label", "answer_original", "n_choices", "n_tokens")
_STR = h5py.string_dtype("utf-8")


class StoreError(ValueError):
    """A store file that is missing, incomplete, or from another config."""


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


@dataclass
class StoreWriter:
    """Writes one store block by block; reopening a `.tmp` with the same config hash resumes it."""

    path: Path
    file: h5py.File
    block_rows: int

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        rows: Mapping[str, np.ndarray],
        order: np.ndarray,
        n_layers_stored: int,
        d_model: int,
        layers: list[int],
        config: Mapping[str, Any],
        config_hash: str,
        provenance: Mapping[str, Any],
        block_rows: int,
        resid: bool = True,
        resid_dtype: str = "float16",
    ) -> StoreWriter:
        path = Path(path)
        tmp = tmp_path(path)
        if tmp.exists():
            try:
                f = h5py.File(tmp, "a")
                if f.attrs.get("config_hash") == config_hash and f.attrs.get("block_rows") == block_rows:
                    return cls(path, f, block_rows)
                f.close()
            except OSError:
                pass  # a file cut off mid-write: start again
            tmp.unlink()
        n = len(order)
        max_choices = order.shape[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(tmp, "w")
        g = f.create_group("rows")
        for key, values in rows.items():
            values = np.asarray(values)
            if values.dtype.kind in "UO":
                g.create_dataset(key, data=values.astype(object), dtype=_STR)
            else:
                g.create_dataset(key, data=values)
        g.create_dataset("order", data=order)
        chunk_rows = max(1, min(block_rows, n))
        n_stored = n_layers_stored
        if resid:
            f.create_dataset(
                "resid", shape=(n, n_stored, d_model), dtype=resid_dtype, chunks=(chunk_rows, n_stored, d_model)
            )
        f.create_dataset("answer_logits", shape=(n, max_choices), dtype="float32", fillvalue=np.nan)
        f.create_dataset("lens_logits", shape=(n, n_stored, max_choices), dtype="float32", fillvalue=np.nan)
        f.create_dataset("option_logprob", shape=(n,), dtype="float32", fillvalue=np.nan)
        f.create_dataset("option_ntokens", shape=(n,), dtype="int32")
        f.create_dataset("option_nchars", shape=(n,), dtype="int32")
        f.create_dataset("blocks_done", data=np.zeros(-(-n // block_rows), dtype=bool))
        f.attrs["config"] = json.dumps(config, sort_keys=True)
        f.attrs["config_hash"] = config_hash
        f.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
        f.attrs["layers"] = np.asarray(layers, dtype=np.int64)
        f.attrs["block_rows"] = block_rows
        f.flush()
        return cls(path, f, block_rows)

    @property
    def n_blocks(self) -> int:
        return len(self.file["blocks_done"])

    def done(self, block: int) -> bool:
        return bool(self.file["blocks_done"][block])

    def block_slice(self, block: int) -> slice:
        n = len(self.file["rows/label"])
        return slice(block * self.block_rows, min(n, (block + 1) * self.block_rows))

    def write_block(self, block: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write every dataset of one block, then mark it done (the mark is the last write)."""
        sl = self.block_slice(block)
        for key, value in arrays.items():
            if key == "resid" and "resid" not in self.file:
                continue
            if not np.all(np.isfinite(value[~np.isnan(value)] if value.dtype.kind == "f" else value)):
                raise StoreError(f"non-finite values in '{key}' for rows {sl.start}..{sl.stop}")
            self.file[key][sl] = value
        self.file["blocks_done"][block] = True
        self.file.flush()

    def finish(self) -> Path:
        if not self.file["blocks_done"][:].all():
            raise StoreError(f"{self.path}: not every block is done")
        self.file.close()
        os.replace(tmp_path(self.path), self.path)
        return self.path

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()


class Store:
    """Read access to a finished store file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            hint = " (an unfinished run is there: rerun the capture to resume it)" if tmp_path(self.path).exists() else ""
            raise StoreError(f"no activation store at {self.path}{hint}")
        self.file = h5py.File(self.path, "r")
        self.rows: dict[str, np.ndarray] = {}
        for key, ds in self.file["rows"].items():
            data = ds[:]
            self.rows[key] = data.astype(str) if ds.dtype.kind == "O" else data
        self.layers: list[int] = [int(x) for x in self.file.attrs["layers"]]
        self.config: dict[str, Any] = json.loads(self.file.attrs["config"])
        self.provenance: dict[str, Any] = json.loads(self.file.attrs["provenance"])

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def __len__(self) -> int:
        return len(self.rows["label"])

    @property
    def has_resid(self) -> bool:
        return "resid" in self.file

    def mask(self, *, variant: str | None = None, lettered: bool | None = None) -> np.ndarray:
        """Boolean row mask for one variant and/or lettered (option_index == -1) vs option rows."""
        m = np.ones(len(self), dtype=bool)
        if variant is not None:
            m &= self.rows["variant_id"] == variant
        if lettered is not None:
            m &= (self.rows["option_index"] == -1) == lettered
        return m

    def variants(self) -> list[str]:
        return list(dict.fromkeys(self.rows["variant_id"].tolist()))

    def identity(self) -> ModelIdentity | None:
        """The captured model's identity (None for stores captured before identities were recorded)."""
        ident = self.provenance.get("identity")
        return from_data(ModelIdentity, ident, "identity") if ident else None

    def subjects(self) -> dict[str, str]:
        """question id -> subject ("" when the task has none or the store predates the subject column)."""
        if "subject" not in self.rows:
            return {}
        return dict(zip(self.rows["question_id"].tolist(), self.rows["subject"].tolist(), strict=True))

    def resid(self, layer_pos: int, mask: np.ndarray | None = None, block: int = 4096) -> np.ndarray:
        """(rows, d_model) float32 residual at stored layer position `layer_pos`, read in blocks."""
        if not self.has_resid:
            raise StoreError(f"{self.path} was captured without residuals (resid=False)")
        ds = self.file["resid"]
        idx = np.arange(len(self)) if mask is None else np.flatnonzero(mask)
        out = np.empty((len(idx), ds.shape[2]), dtype=np.float32)
        for start in range(0, len(idx), block):
            chunk = idx[start : start + block]
            lo, hi = int(chunk[0]), int(chunk[-1]) + 1
            out[start : start + len(chunk)] = ds[lo:hi, layer_pos, :][chunk - lo]
        return out

    def array(self, key: str, mask: np.ndarray | None = None) -> np.ndarray:
        data = self.file[key][:]
        return data if mask is None else data[mask]
