"""Parts every results schema shares: the `Estimate`, the model's identity and the run header.

Field comments are the field documentation (`docs/results.md` is generated from them).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from core.provenance import machine, package_version, to_jsonable, versions
from core.schemas.convert import from_data

ModelKind = Literal["base", "instruct", "fine-tuned"]
KindSource = Literal["flag", "lock-record", "unlock-record", "registry", "chat-template", "default"]
MODEL_KINDS: tuple[str, ...] = ("base", "instruct", "fine-tuned")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided interval (95% unless the producer says otherwise)."""

    value: float  # the point estimate (null when undefined, e.g. an accuracy over no questions)
    lo: float  # lower end of the interval (null when there is none)
    hi: float  # upper end of the interval (null when there is none)
    n: int  # how many observations it rests on (questions, runs, shuffles)
    method: str  # the interval: wilson, bootstrap, t, bootstrap_nested, bootstrap_crossed, or none (lo = hi = null)

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain dict with keys value, lo, hi, n, method."""
        return asdict(self)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def format_estimate(e: Estimate | None, *, signed: bool = False, digits: int = 3, missing: str = "n/a",
                    no_interval: str = " (no interval)", with_n: bool = False,
                    over: Mapping[str, str] | None = None) -> str:
    """An estimate as text, the one formatting every summary and report uses: '0.123 [0.100, 0.150]'.

    `signed`: '+0.023 [-0.010, +0.050]'; `missing`: the text for no estimate or an undefined value; `no_interval`:
    appended to the value when there is no interval (lo or hi null or nan); `with_n`: ' (n=500)' appended; `over`:
    ' (what the interval is over)' appended, looked up by the estimate's method.
    """
    if e is None or not _finite(e.value):
        return missing
    f = f"{'+' if signed else ''}.{digits}f"
    n = f" (n={e.n})" if with_n else ""
    if not (_finite(e.lo) and _finite(e.hi)):
        return f"{e.value:{f}}{no_interval}{n}"
    text = f"{e.value:{f}} [{e.lo:{f}}, {e.hi:{f}}]"
    if over is not None:
        text += f" ({over.get(e.method, e.method)})"
    return text + n


@dataclass(frozen=True)
class ModelIdentity:
    """Which model ran: what it was called, where its weights came from, its size and kind."""

    name: str  # the model as given to the command: an embedded name, a Hugging Face id or a directory
    source: str  # where the weights were loaded from: embedded, hf-cache, hf, local or tiny (built in code)
    path: str | None  # the directory the weights were read from (null for models built in code)
    weight_hash: str  # first 16 hex digits of a sha256: over parameter names, shapes, dtypes and bytes
    # (method "tensors"), or over the weight files' names and sha256s (method "files")
    weight_hash_method: str  # tensors (small models, random-init controls) or files (models above 2e9 parameters
    # or quantized, loaded from weight files: their bytes are never read through the CPU as tensors)
    n_params: int  # number of parameters (tied weights counted once)
    kind: ModelKind  # base, instruct or fine-tuned
    kind_source: KindSource  # how `kind` was decided: the --model-kind flag; a lock or unlock record in the
    # checkpoint (fine-tuned); the embedded models' registry; the tokenizer's chat template (instruct); else base.
    # Never from the model's name.
    architecture: str  # the Hugging Face model class, e.g. LlamaForCausalLM
    n_layers: int  # transformer blocks
    d_model: int  # width of the residual stream
    random_init: bool  # weights re-initialised (the random-init control model)

    def with_kind(self, kind: str | None) -> ModelIdentity:
        """This identity with `kind` as given by the --model-kind flag (unchanged when `kind` is None)."""
        if kind is None:
            return self
        if kind not in MODEL_KINDS:
            raise ValueError(f"--model-kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
        return replace(self, kind=kind, kind_source="flag")


@dataclass(frozen=True)
class TaskInfo:
    """Which questions a run asked."""

    name: str  # task name (see `cli.py tasks`), e.g. mmlu, capitals, jsonl:PATH
    split: str  # the task split the questions were drawn from
    n_questions: int  # questions the run used
    data_dir: str | None  # benchmark data directory (null: built-in task or the default location)
    data_fingerprint: str | None  # hash of the questions' content (null until producers record it)


@dataclass(frozen=True)
class Execution:
    """Where and how the model ran, as resolved on the machine (never the flag's "auto")."""

    device: str  # the device the model ran on (cpu, cuda:0, mps); with a device map, its input embedding's
    # device; "cpu" for commands that run no model
    dtype: str | None  # the dtype the model computed in (float32, bfloat16, float16); null when no model ran
    batch_size: int | str | None  # rows per forward pass, or the training batch size; "auto" when the run chose
    # it (halving on out-of-memory errors); null when not applicable
    micro_batch_size: int | None  # training: rows per forward and backward pass (a batch is split into
    # gradient-accumulated parts of this size; the smallest any run used); null when the command trains nothing
    threads: int  # torch CPU threads used
    device_map: str | None  # --device-map the model was spread with (auto, balanced, sequential); null: one device
    devices: list[str]  # every device that held model weights (one unless a device map spread them)
    load_in: str | None  # weight quantization (8bit or 4bit, bitsandbytes); null: full weights


@dataclass(frozen=True)
class Machine:
    """The machine a run ran on (float results can differ in their last bits across CPU kinds and thread counts)."""

    platform: str  # platform.platform()
    processor: str  # CPU architecture
    cpu_count: int | None  # logical CPUs


@dataclass(frozen=True)
class RunHeader:
    """What every results file records about its run: command, model, task, seed, config, versions, machine, time."""

    command: str  # the command that wrote the file: probe, eval, transfer, lock, unlock, diff
    created_utc: str  # when the file was written (ISO 8601, UTC)
    package_version: str  # gaplens version
    versions: dict[str, str]  # python and the packages whose changes can move the numbers
    machine: Machine  # where it ran
    model: ModelIdentity  # the model the run is about (diff: the reference checkpoint a; lock: the locked one)
    task: TaskInfo  # the questions
    seed: int  # the run's seed (splits, subsampling, controls)
    config: dict[str, Any]  # the command's full config (every flag)
    config_hash: str  # hash of the config fields that change results; a rerun with the same hash is reused
    execution: Execution  # device, dtype, batch size, threads
    timing: dict[str, float]  # wall seconds per phase (e.g. capture, probes, lock, total)
    inputs: dict[str, str | None]  # what the results were computed from (store checksums, data and model
    # fingerprints): results whose inputs changed are computed again, never reused


def run_header(*, command: str, model: ModelIdentity, task: TaskInfo, seed: int, config: Any, config_hash: str,
               execution: Execution, timing: dict[str, float],
               inputs: dict[str, str | None] | None = None) -> RunHeader:
    """A header stamped now, with this machine and these package versions."""
    m = machine()
    return RunHeader(
        command=command, created_utc=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        package_version=package_version(), versions=versions(),
        machine=Machine(str(m["platform"]), str(m["processor"]), m["cpu_count"]), model=model, task=task, seed=seed,
        config=to_jsonable(config), config_hash=config_hash, execution=execution,
        timing={k: round(float(v), 1) for k, v in timing.items()}, inputs=dict(inputs or {}))


def recorded_identity(provenance: dict[str, Any]) -> ModelIdentity | None:
    """The model identity a store or generations file recorded (None when it predates recorded identities).
    Records made before `weight_hash_method` existed hashed the tensors, and read as such."""
    ident = provenance.get("identity")
    if not ident:
        return None
    return from_data(ModelIdentity, {"weight_hash_method": "tensors", **ident}, "identity")
