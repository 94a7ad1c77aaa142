"""Frozen config dataclasses: the shared option groups every command composes, and their one place of validation.

A command's `Config` inherits the groups it needs (`ModelOptions`, `TaskOptions`, `ExecutionOptions`,
`OutputOptions`) and adds its own fields. Every field is made with `opt(default, help, ...)`: the help text becomes
the command's `--help`, `ui=True` marks fields that change no result (output folder, threads, progress bars),
which `core.provenance.config_hash` leaves out, so rerunning with another `--threads` reuses the finished run.

Validation: every class in a config's MRO may define `_check(self)`; `Options.__post_init__` calls each of them once,
base groups first, so a shared field is validated in one place whatever command uses it. Errors are ValueErrors
naming the flag.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.plugins import is_path
from core.schemas.common import MODEL_KINDS

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICE_MAPS = ("auto", "balanced", "sequential")
QUANTIZATIONS = ("8bit", "4bit")
AUTO_BATCH = "auto"
DEFAULT_MODEL = "smollm2-135m-instruct"


def opt(default: Any, help: str, *, ui: bool = False, hash_if_set: bool = False,  # noqa: A002 - the flag's help
        positional: bool = False) -> Any:
    """A config field: default, `--help` text, and whether it is UI-only (left out of the hash).

    `hash_if_set`: the field counts in the hash only when it differs from its default, so adding it to a config
    keeps the hashes (and finished runs) of configs that do not use it.
    """
    meta = {"help": help, "ui": ui, "hash_if_set": hash_if_set, "positional": positional}
    if isinstance(default, (list, dict, set)):
        raise TypeError("config defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


def flag(name: str) -> str:
    """The command-line spelling of a field name: `data_dir` -> `--data-dir`."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Options:
    """Base of every config: runs each class's `_check` once, base groups first."""

    def __post_init__(self) -> None:
        for cls in reversed(type(self).__mro__):
            check = cls.__dict__.get("_check")
            if check is not None:
                check(self)

    def _set(self, name: str, value: Any) -> None:
        """Normalise a field of this frozen config (only inside `_check`)."""
        object.__setattr__(self, name, value)


@dataclass(frozen=True)
class ModelOptions(Options):
    """Which model: an embedded name, a Hugging Face id, or a local HF model directory."""

    model: str = opt(DEFAULT_MODEL, "embedded name, HF id or local HF model directory (see `cli.py models`)")

    def _check(self) -> None:
        if not str(self.model).strip():
            raise ValueError("--model is empty")


@dataclass(frozen=True)
class ModelKindOptions(Options):
    """The model's kind as results record it, when the run should not decide it itself."""

    model_kind: str | None = opt(None, "the model's kind in the results: base, instruct or fine-tuned (default: "
                                 "fine-tuned for a checkpoint with a lock or unlock record, the registry's kind for "
                                 "embedded models, instruct when the tokenizer has a chat template, else base)",
                                 hash_if_set=True)

    def _check(self) -> None:
        if self.model_kind is not None and self.model_kind not in MODEL_KINDS:
            raise ValueError(f"--model-kind must be one of {', '.join(MODEL_KINDS)}, got {self.model_kind!r}")


@dataclass(frozen=True)
class DataOptions(Options):
    """Where benchmark files are (recorded as an absolute path: one directory named two ways is one run)."""

    data_dir: str | None = opt(None, "benchmark data directory (default $GAPLENS_DATA_DIR)")

    def _check(self) -> None:
        if isinstance(self.data_dir, str) and self.data_dir:
            self._set("data_dir", str(Path(self.data_dir).expanduser().resolve()))


@dataclass(frozen=True)
class TaskOptions(DataOptions):
    """Which questions: a task, its split, where its files are, how many questions and the seed that draws them."""

    task: str = opt("capitals", "task name (see `cli.py tasks`)")
    split: str = opt("test", "task split to draw questions from")
    n: int | None = opt(None, "number of questions (seeded subsample); all if unset")
    seed: int = opt(0, "seed for subsampling, splits, few-shot draws and controls")
    select: str = opt("hash", 'which n questions: "hash" (a seeded sample, nested across n), "first" (file '
                      'order) or "stratified" (by subject, in proportion to its size)', hash_if_set=True)
    fields: str | None = opt(None, 'field mapping for csv:/jsonl:/parquet:/hf: tasks, e.g. "question=q&choices=A,B,'
                             'C,D&answer=label" (or append "?..." to --task)', hash_if_set=True)
    truncate: str = opt("none", "prompts longer than the model's context: none (an error naming the question) or "
                        "left (drop their first tokens; the count is recorded)", hash_if_set=True)

    def _check(self) -> None:
        if not str(self.task).strip():
            raise ValueError("--task is empty")
        if self.truncate not in ("none", "left"):
            raise ValueError(f"--truncate must be none or left, got {self.truncate!r}")
        if self.select not in ("hash", "first", "stratified"):
            raise ValueError(f"--select must be hash, first or stratified, got {self.select!r}")
        if self.n is not None and self.n < 1:
            raise ValueError(f"--n must be at least 1, got {self.n}")


@dataclass(frozen=True)
class ExecutionOptions(Options):
    """Where and how the model runs. None of these change which questions are asked; dtype, device, device map and
    quantization can change the numbers slightly, so they count in the hash (the last two only when set), while
    threads do not. `hooks.execution.check` resolves them on the machine before anything loads."""

    device: str = opt("auto", "auto (cuda if available, else mps, else cpu), cpu, cuda, cuda:N or mps")
    dtype: str = opt("float32", "model dtype: auto (bfloat16 on CUDA, else float32), float32, bfloat16 or float16")
    # str first: the command line hands over text; `_check` turns a number into an int ("auto" stays)
    batch_size: str | int = opt(16, 'rows per forward pass (upper bound), or "auto": start large and halve on '
                                "out-of-memory errors")
    threads: int = opt(0, "torch CPU threads; 0: every core this process may use", ui=True)
    profile: bool = opt(False, "print how long each phase of a capture took (forward with hooks, lens, "
                        "device-to-host copies, store writes)", ui=True)
    device_map: str | None = opt(None, "spread the model over every visible CUDA device with accelerate: auto, "
                                 "balanced or sequential (for models that do not fit one device)", hash_if_set=True)
    load_in: str | None = opt(None, "load the weights quantized with bitsandbytes: 8bit or 4bit (CUDA only)",
                              hash_if_set=True)

    def _check(self) -> None:
        dev = str(self.device)
        if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.dtype is not None and self.dtype not in DTYPES:  # None: a command's own default (e.g. the lock's)
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.batch_size is not None:
            self._set("batch_size", parse_batch_size(self.batch_size))
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {self.threads}")
        if self.device_map is not None and self.device_map not in DEVICE_MAPS:
            raise ValueError(f"--device-map must be one of {', '.join(DEVICE_MAPS)}, got {self.device_map!r}")
        if self.load_in is not None:
            if self.load_in not in QUANTIZATIONS:
                raise ValueError(f"--load-in must be one of {', '.join(QUANTIZATIONS)}, got {self.load_in!r}")
            if dev in ("cpu", "mps"):
                raise ValueError(f"--load-in {self.load_in} (bitsandbytes) needs a CUDA device, not --device {dev}")


def parse_batch_size(value: Any) -> int | str:
    """A `--batch-size` value: a positive int (also given as text) or "auto"; ValueError naming the flag."""
    if value == AUTO_BATCH:
        return AUTO_BATCH
    try:
        size = int(value) if not isinstance(value, bool) and str(value).strip().lstrip("+").isdigit() else None
    except (TypeError, ValueError):
        size = None
    if size is None or size < 1:
        raise ValueError(f'--batch-size must be a number >= 1 or "auto", got {value!r}')
    return size


@dataclass(frozen=True)
class OutputOptions(Options):
    """Where the run directory goes (UI-only: the same run written elsewhere is the same run)."""

    out: str | None = opt(None, "output directory (default: runs/<command>-<model>-<task>)", ui=True)
    overwrite: bool = opt(False, "replace results in --out made with another config (finished captures that still "
                          "match are kept); without it such a rerun is refused", ui=True)

    def out_dir(self, command: str) -> Path:
        """`--out`, else runs/<command>-<model>-<task> (a model given as a path by its folder name; characters
        other than letters, digits, '.', '_' and '-' replaced by '-')."""
        if self.out:
            return Path(self.out)
        model = str(getattr(self, "model", "") or "")
        model = Path(model).name if model and Path(model).exists() else model
        parts = [command, model, str(getattr(self, "task", "") or "")]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(p for p in parts if p)).strip("-.")
        return Path("runs") / safe[:120]


LOG_FORMATS = ("inspect", "lmeval")  # the writers of the `logs` package


@dataclass(frozen=True)
class PluginOptions(Options):
    """Plug-ins to load before the command runs (`core.plugins`): every command has this group, and the sweep
    passes it on to its cells. UI-only: what a plug-in defines is identified by the names it registers and the
    task data fingerprint, recorded in every run; the include list itself is recorded in the config."""

    include: tuple[str, ...] = opt((), "plug-ins to import first: module names or .py files that register tasks, "
                                   "variants, probes or policies (installed packages with gaplens entry points "
                                   "load without it)", ui=True)

    def _check(self) -> None:
        if isinstance(self.include, str):
            self._set("include", (self.include,))
        paths = tuple(str(Path(s).expanduser().resolve()) if is_path(s) else s.strip() for s in self.include)
        if any(not s for s in paths):
            raise ValueError("--include has an empty entry")
        self._set("include", paths)


@dataclass(frozen=True)
class LogOptions(Options):
    """Logs other tools read, written beside the run's own files (UI-only: they change no result)."""

    log: tuple[str, ...] = opt((), "also write logs other tools read, into OUT/logs: inspect (an inspect_ai eval "
                               "log: `inspect view --log-dir OUT/logs/inspect`), lmeval (lm-eval's "
                               "samples_<task>.jsonl and results json)", ui=True)
    wandb: str | None = opt(None, "also log the run to this Weights & Biases project (WANDB_MODE=offline works "
                            "without a network; `wandb sync` uploads later)", ui=True)

    def _check(self) -> None:
        if isinstance(self.log, str):
            self._set("log", tuple(x.strip() for x in self.log.split(",") if x.strip()))
        bad = [x for x in self.log if x not in LOG_FORMATS]
        if bad:
            raise ValueError(f"--log: unknown format {bad[0]!r}; formats: {', '.join(LOG_FORMATS)}")
        if self.wandb is not None and not self.wandb.strip():
            raise ValueError("--wandb needs a project name")


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_threads(threads: int) -> int:
    """The torch thread count a run uses: `threads`, or every available core for 0."""
    return threads if threads > 0 else available_cores()


def ui_fields(cfg: Any) -> set[str]:
    """Names of the fields of config `cfg` that change no result."""
    return {f.name for f in dataclasses.fields(cfg) if f.metadata.get("ui")}


def pick(cls: type, cfg: Any, **overrides: Any) -> Any:
    """A `cls` config from the same-named fields of `cfg` (the option groups they share), plus `overrides`."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in names}
    return cls(**(values | overrides))
