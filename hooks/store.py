"""The activation store: one HDF5 file per capture run, and the only module that imports h5py.

One row per (question, variant) for lettered prompts, or per (question, variant, option) for option-text prompts.
Row tables sit beside the activations so several label sets can share them:

    rows/question_id, rows/variant_id      (rows,) str
    rows/option_index                      (rows,) int   -1 for lettered rows, else the DISPLAYED option position
    rows/label                             (rows,) int   lettered: gold displayed position; option: 1 if gold else 0
    rows/answer_original                   (rows,) int   gold index in the record's original order
    rows/order                             (rows, max_choices) int  displayed position -> original index (-1 pad)
    rows/n_choices, rows/n_tokens, rows/subject
    resid                                  (rows, layers, d_model) float16/32 (layers = the stored resid layers)
    answer_logits                          (rows, max_choices) float32  lettered rows (NaN elsewhere)
    lens_logits                            (rows, layers, max_choices) float32  logit lens on the choice tokens
    option_logprob, option_ntokens, option_nchars   (rows,) option rows (NaN / 0 elsewhere)

Attributes: `config` (JSON of the capture config), `config_hash`, `provenance` (JSON), `layers` (resid layer
indices: 0..n_layers-1 are each block's resid_pre, n_layers is the final resid_post before the final norm),
`block_rows`, `n_blocks`, `complete` and `checksum` (sha256 over every block's arrays, recorded at completion).

**Durability.** While a capture runs nothing is written to the HDF5 file. Each finished block of rows goes to its own
file `NAME.parts/block-NNNNN.npz` (written under a temporary name, flushed to disk, then renamed), beside
`NAME.parts/meta.json` (the layout and config). A failed write (a full disk, a killed process) loses at most the
block being written; rerunning the same capture finds the finished blocks and computes only the others.
`StoreWriter.finish` consolidates the blocks into `NAME` (through `NAME.tmp`, renamed when complete) with the
checksum, then removes the parts. A reader opens only complete files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from jaxtyping import Float

from core.io import atomic_path, atomic_write
from core.schemas import ModelIdentity, recorded_identity

ROW_FIELDS = ("question_id", "variant_id", "option_index", "label", "answer_original", "n_choices", "n_tokens")
ARRAYS = ("resid", "answer_logits", "lens_logits", "option_logprob", "option_ntokens", "option_nchars")
FORMAT = 2  # on-disk layout version (2: block parts consolidated at completion, with a checksum)
_STR = h5py.string_dtype("utf-8")
log = logging.getLogger(__name__)


class StoreError(ValueError):
    """A store file that is missing, incomplete, damaged, or from another config; the message names the file."""


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def _block_file(parts: Path, block: int) -> Path:
    return parts / f"block-{block:05d}.npz"


def _fsync_write(path: Path, write: Any) -> None:
    """Write through `write(fh)` atomically, flushed to disk before the rename (see `core.io.atomic_write`)."""
    atomic_write(path, write, fsync=True)


def _table_bytes(values: np.ndarray) -> bytes:
    """Bytes of a row table for the checksum: strings as UTF-8 joined by NUL, numbers as little-endian int64."""
    if values.dtype.kind in "UOS":
        return "\0".join(str(v) for v in values.tolist()).encode()
    return np.ascontiguousarray(values.astype("<i8")).tobytes()


def estimate_bytes(n_rows: int, n_layers: int, d_model: int, max_choices: int, *, resid: bool,
                   resid_dtype: str) -> int:
    """Bytes one finished store takes (residuals dominate: rows x layers x d_model)."""
    per_row = n_layers * max_choices * 4 + max_choices * 4 + 12
    if resid:
        per_row += n_layers * d_model * np.dtype(resid_dtype).itemsize
    return n_rows * per_row


def check_free_space(path: Path, needed: int) -> None:
    """Refuse to start when the disk holding `path` has less free space than `needed` bytes (parts + the
    consolidated file need about twice the store)."""
    where = path.parent
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < needed:
        raise StoreError(f"{path}: the capture needs about {needed / 2**30:.2f} GiB (its blocks, then the "
                         f"consolidated file) and {where} has {free / 2**30:.2f} GiB free; free space or choose "
                         "another --out (or capture fewer --layers / without residuals)")


@dataclass
class StoreWriter:
    """Writes one store block by block into `NAME.parts/`; reopening with the same config resumes it."""

    path: Path
    parts: Path
    meta: dict[str, Any]
    block_rows: int
    n_rows: int

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
        inputs: Mapping[str, Any] | None = None,
        resid: bool = True,
        resid_dtype: str = "float16",
        check_space: bool = True,
    ) -> StoreWriter:
        """Start a store at `path`, or resume the unfinished one there with the same config hash and layout.

        An unfinished store of another config is refused (it may be somebody's work): its parts directory is
        named in the error.
        """
        path = Path(path)
        parts = parts_dir(path)
        meta = {
            "format": FORMAT, "config": dict(config), "config_hash": config_hash, "provenance": dict(provenance),
            "inputs": dict(inputs or {}),
            "layers": [int(x) for x in layers], "block_rows": int(block_rows), "n_rows": int(len(order)),
            "d_model": int(d_model), "n_layers_stored": int(n_layers_stored), "max_choices": int(order.shape[1]),
            "resid": bool(resid), "resid_dtype": resid_dtype,
        }
        meta_path = parts / "meta.json"
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise StoreError(f"{meta_path}: unreadable ({exc}); delete {parts} to start the capture again") \
                    from None
            same = all(old.get(k) == meta[k] for k in meta if k not in ("config", "provenance", "inputs"))
            if same and old.get("inputs") != meta["inputs"]:
                log.warning("%s: the unfinished capture there was made from other inputs (%s); starting again",
                            parts, ", ".join(k for k in meta["inputs"] if old.get("inputs", {}).get(k) !=
                                             meta["inputs"][k]))
                shutil.rmtree(parts)
                return cls.open(path, rows=rows, order=order, n_layers_stored=n_layers_stored, d_model=d_model,
                                layers=layers, config=config, config_hash=config_hash, provenance=provenance,
                                block_rows=block_rows, inputs=inputs, resid=resid, resid_dtype=resid_dtype,
                                check_space=check_space)
            for torn in parts.glob("*.tmp"):  # a block being written when the process died
                torn.unlink()
            if not same:
                raise StoreError(f"{parts} holds an unfinished capture of another config ({old.get('config_hash')}, "
                                 f"now {config_hash}); delete it or choose another --out")
            return cls(path, parts, old, block_rows, len(order))
        if check_space:
            need = 2 * estimate_bytes(len(order), n_layers_stored, d_model, order.shape[1], resid=resid,
                                      resid_dtype=resid_dtype)
            check_free_space(path, need)
        parts.mkdir(parents=True, exist_ok=True)
        table = {k: np.asarray(v).astype(str) if np.asarray(v).dtype.kind in "UO" else np.asarray(v)
                 for k, v in rows.items()}
        _fsync_write(parts / "rows.npz", lambda fh: np.savez(fh, order=order, **table))
        _fsync_write(meta_path, lambda fh: fh.write(json.dumps(meta, sort_keys=True).encode()))
        return cls(path, parts, meta, block_rows, len(order))

    @property
    def n_blocks(self) -> int:
        return -(-self.n_rows // self.block_rows)

    def done(self, block: int) -> bool:
        """Whether block `block` is finished (its file exists and opens)."""
        f = _block_file(self.parts, block)
        if not f.exists():
            return False
        try:
            with np.load(f) as z:
                return set(z.files) >= {"answer_logits"}
        except (OSError, ValueError, EOFError):
            f.unlink()  # a torn block file: compute it again
            return False

    def block_slice(self, block: int) -> slice:
        return slice(block * self.block_rows, min(self.n_rows, (block + 1) * self.block_rows))

    def write_block(self, block: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write every array of one block to its own file (temporary name, fsync, rename): a failure here leaves
        every earlier block intact."""
        sl = self.block_slice(block)
        expected = {k for k in ARRAYS if k != "resid" or self.meta["resid"]}
        missing = expected - set(arrays)
        if missing:
            raise StoreError(f"{self.path}: block {block} lacks {sorted(missing)}")
        out = {}
        for key, value in arrays.items():
            if key not in ARRAYS:
                raise StoreError(f"{self.path}: unknown array {key!r}")
            if key == "resid" and not self.meta["resid"]:
                continue
            value = np.asarray(value)
            if len(value) != sl.stop - sl.start:
                raise StoreError(f"{self.path}: block {block} array {key!r} has {len(value)} rows, expected "
                                 f"{sl.stop - sl.start}")
            if value.dtype.kind == "f" and not np.all(np.isfinite(value[~np.isnan(value)])):
                raise StoreError(f"{self.path}: non-finite values in '{key}' for rows {sl.start}..{sl.stop}")
            out[key] = value
        try:
            _fsync_write(_block_file(self.parts, block), lambda fh: np.savez(fh, **out))
        except OSError as exc:
            raise StoreError(f"{self.path}: writing block {block} failed ({exc}); the {block} blocks before it are "
                             f"kept in {self.parts} and a rerun resumes from there") from exc

    def finish(self) -> Path:
        """Consolidate the blocks into the HDF5 file with a checksum, rename it into place, remove the parts."""
        missing = [b for b in range(self.n_blocks) if not self.done(b)]
        if missing:
            raise StoreError(f"{self.path}: blocks {missing[:5]}{'...' if len(missing) > 5 else ''} are not done")
        m = self.meta
        digest = hashlib.sha256()
        try:
            with atomic_path(self.path, fsync=True) as tmp, np.load(self.parts / "rows.npz") as z, \
                    h5py.File(tmp, "w") as f:
                g = f.create_group("rows")
                for key in z.files:
                    values = z[key]
                    if key == "order":
                        continue
                    if values.dtype.kind in "UO":
                        g.create_dataset(key, data=values.astype(object), dtype=_STR)
                    else:
                        g.create_dataset(key, data=values)
                g.create_dataset("order", data=z["order"])
                for key in sorted(z.files):  # the row tables (labels, ids) count in the checksum too
                    digest.update(f"rows/{key}".encode())
                    digest.update(_table_bytes(z[key]))
                self._write_arrays(f, digest)
                f.attrs["config"] = json.dumps(m["config"], sort_keys=True)
                f.attrs["config_hash"] = m["config_hash"]
                f.attrs["inputs"] = json.dumps(m.get("inputs", {}), sort_keys=True)
                f.attrs["provenance"] = json.dumps(m["provenance"], sort_keys=True)
                f.attrs["layers"] = np.asarray(m["layers"], dtype=np.int64)
                f.attrs["block_rows"] = self.block_rows
                f.attrs["n_blocks"] = self.n_blocks
                f.attrs["format"] = FORMAT
                f.attrs["checksum"] = digest.hexdigest()
                f.attrs["complete"] = True
        except OSError as exc:
            raise StoreError(f"{self.path}: consolidating the finished blocks failed ({exc}); they are kept in "
                             f"{self.parts}, rerun to try again") from exc
        shutil.rmtree(self.parts, ignore_errors=True)
        return self.path

    def _write_arrays(self, f: h5py.File, digest: Any) -> None:
        m = self.meta
        n, n_l, c = self.n_rows, m["n_layers_stored"], m["max_choices"]
        chunk = max(1, min(self.block_rows, n))
        shapes = {"answer_logits": ((n, c), "float32"), "lens_logits": ((n, n_l, c), "float32"),
                  "option_logprob": ((n,), "float32"), "option_ntokens": ((n,), "int32"),
                  "option_nchars": ((n,), "int32")}
        if m["resid"]:
            shapes["resid"] = ((n, n_l, m["d_model"]), m["resid_dtype"])
        ds = {}
        for key, (shape, dtype) in shapes.items():
            fill = np.nan if dtype == "float32" else 0
            chunks = (chunk, *shape[1:]) if key == "resid" else None
            ds[key] = f.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks, fillvalue=fill)
        for b in range(self.n_blocks):
            sl = self.block_slice(b)
            with np.load(_block_file(self.parts, b)) as z:
                for key in sorted(z.files):
                    value = z[key]
                    ds[key][sl] = value.astype(ds[key].dtype, copy=False)
                    digest.update(key.encode())
                    digest.update(np.ascontiguousarray(value.astype(ds[key].dtype, copy=False)).tobytes())

    def close(self) -> None:
        """Nothing stays open between blocks (kept for the callers' try/finally)."""


class Store:
    """Read access to a finished, complete store file; rows and layers are read by index, never all at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            hint = (" (an unfinished capture is in " + str(parts_dir(self.path)) + ": rerun the capture to resume it)"
                    if parts_dir(self.path).exists() else "")
            raise StoreError(f"no activation store at {self.path}{hint}")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise StoreError(f"{self.path}: not a readable HDF5 store ({exc}); delete it and rerun the capture") \
                from None
        try:
            attrs = self._file.attrs
            if not attrs.get("complete", False) or "checksum" not in attrs:
                raise StoreError(f"{self.path}: the store is incomplete (no completion record); delete it and rerun "
                                 "the capture")
            self.rows: dict[str, np.ndarray] = {}
            for key, ds in self._file["rows"].items():
                data = ds[:]
                self.rows[key] = data.astype(str) if ds.dtype.kind == "O" else data
            self.layers: list[int] = [int(x) for x in attrs["layers"]]
            self.config: dict[str, Any] = json.loads(attrs["config"])
            self.provenance: dict[str, Any] = json.loads(attrs["provenance"])
            self.config_hash: str = str(attrs["config_hash"])
            self.inputs: dict[str, Any] = json.loads(attrs.get("inputs", "{}"))
            self.checksum: str = str(attrs["checksum"])
        except StoreError:
            self._file.close()
            raise
        except (KeyError, OSError, ValueError) as exc:
            self._file.close()
            raise StoreError(f"{self.path}: damaged store ({type(exc).__name__}: {exc}); delete it and rerun the "
                             "capture") from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __len__(self) -> int:
        return len(self.rows["label"])

    @property
    def has_resid(self) -> bool:
        return "resid" in self._file

    @property
    def resid_shape(self) -> tuple[int, int, int]:
        """(rows, stored layers, d_model) of the residuals."""
        self._need_resid()
        return tuple(self._file["resid"].shape)  # type: ignore[return-value]

    @property
    def resid_dtype(self) -> np.dtype:
        self._need_resid()
        return self._file["resid"].dtype

    def _need_resid(self) -> None:
        if not self.has_resid:
            raise StoreError(f"{self.path} was captured without residuals (resid=False)")

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
        return recorded_identity(self.provenance)

    def subjects(self) -> dict[str, str]:
        """question id -> subject ("" when the task has none or the store predates the subject column)."""
        if "subject" not in self.rows:
            return {}
        return dict(zip(self.rows["question_id"].tolist(), self.rows["subject"].tolist(), strict=True))

    def _index(self, rows: np.ndarray | Sequence[int] | None) -> np.ndarray:
        if rows is None:
            return np.arange(len(self))
        idx = np.asarray(rows)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise StoreError(f"{self.path}: a row mask must have {len(self)} entries, got {idx.shape}")
            return np.flatnonzero(idx)
        return idx.astype(np.int64)

    def _read(self, key: str, idx: np.ndarray, *tail: Any, block: int = 4096) -> np.ndarray:
        """Rows `idx` (any order, repeats allowed) of dataset `key`, optionally sliced by `tail` on later axes, read
        in sorted contiguous blocks."""
        ds = self._file[key]
        if len(idx) == 0:
            probe = ds[0:0][(slice(None), *tail)] if tail else ds[0:0]
            return np.empty(probe.shape, dtype=ds.dtype)
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        parts = []
        for start in range(0, len(sorted_idx), block):
            chunk = sorted_idx[start : start + block]
            lo, hi = int(chunk[0]), int(chunk[-1]) + 1
            data = ds[(slice(lo, hi), *tail)] if tail else ds[lo:hi]
            parts.append(data[chunk - lo])
        out = np.concatenate(parts)
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return out[back]

    def resid(self, layer_pos: int, rows: np.ndarray | Sequence[int] | None = None) -> Float[np.ndarray, "n d"]:
        """(rows, d_model) float32 residuals at stored layer position `layer_pos` for `rows` (indices or a mask)."""
        self._need_resid()
        return self._read("resid", self._index(rows), layer_pos, slice(None)).astype(np.float32)

    def resid_rows(self, rows: np.ndarray | Sequence[int] | None = None) -> Float[np.ndarray, "n layers d"]:
        """(rows, stored layers, d_model) residuals of `rows` (indices or a mask), in their stored dtype."""
        self._need_resid()
        return self._read("resid", self._index(rows))

    def array(self, key: str, rows: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """A per-row array (`answer_logits`, `lens_logits`, `option_logprob`, `option_ntokens`, `option_nchars`) for
        `rows` (indices or a mask; all rows when None)."""
        if key not in ARRAYS or key == "resid":
            raise StoreError(f"{self.path}: no per-row array {key!r}; arrays: {', '.join(ARRAYS[1:])}")
        return self._read(key, self._index(rows))

    def verify(self) -> bool:
        """Recompute the checksum over every array and compare it with the one recorded at completion."""
        digest = hashlib.sha256()
        tables = {**{k: self._file["rows"][k][:] for k in self._file["rows"]}}
        for key in sorted(tables):
            digest.update(f"rows/{key}".encode())
            digest.update(_table_bytes(tables[key].astype(str) if tables[key].dtype.kind == "O" else tables[key]))
        block_rows = int(self._file.attrs["block_rows"])
        keys = sorted(k for k in ARRAYS if k in self._file)
        for b in range(int(self._file.attrs["n_blocks"])):
            sl = slice(b * block_rows, min(len(self), (b + 1) * block_rows))
            for key in keys:
                digest.update(key.encode())
                digest.update(np.ascontiguousarray(self._file[key][sl]).tobytes())
        return digest.hexdigest() == self.checksum


def is_complete(path: str | Path, config_hash: str | None = None) -> bool:
    """Whether `path` is a complete store (optionally of `config_hash`); never raises for a damaged file."""
    try:
        with Store(path) as s:
            return config_hash is None or s.config_hash == config_hash
    except StoreError:
        return False


def store_checksum(path: str | Path) -> str:
    """The checksum a complete store recorded at completion (what results computed from it record)."""
    with Store(path) as s:
        return s.checksum
