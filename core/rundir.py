"""Run directories: checked before any model or data loads, claimed by one command, written by one process.

`run_directory(out, command)` is the context every command writes its run directory in:

- **early checks**: `out` is a directory or can be made one, and is writable; otherwise a `RunDirError` names it;
- **one command per directory**: the first command to write `out` records itself in `out/.gaplens-run.json`; any
  other command is refused (`eval --resid` pointed at a probe's directory would replace its store);
- **one writer at a time**: an exclusive lock file `out/.gaplens.lock` holds the owner's pid, host, command and
  start time for as long as the command runs, and is removed on exit (also on errors and Ctrl-C). A second writer
  gets an error naming the holder. A lock left by a process that is no longer alive on this host (kill -9, a
  crash) is taken over, with a warning. A lock from another host is never taken over (the directory may be on a
  shared filesystem): remove it by hand when you know that run is gone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from core.io import write_text

log = logging.getLogger(__name__)

LOCK_NAME = ".gaplens.lock"
RELABELS = ("model_kind",)  # config fields that only relabel results: changing them recomputes without --overwrite
MARKER_NAME = ".gaplens-run.json"


class RunDirError(ValueError):
    """An output directory that cannot be used: not a directory, not writable, another command's, or busy."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(out: Path) -> Path:
    """Make `out` (and its parents) a directory and check that files can be created in it."""
    out = Path(out)
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise RunDirError(f"--out {out}: {parent} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"--out {out}: cannot create the directory ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {out}: the directory is not writable")
    return out


def _claim(out: Path, command: str) -> None:
    marker = out / MARKER_NAME
    if marker.exists():
        try:
            owner = json.loads(marker.read_text()).get("command")
        except (OSError, json.JSONDecodeError):
            owner = None
        if owner is not None and owner != command:
            raise RunDirError(f"--out {out} is a `{owner}` run directory; `{command}` does not write into another "
                              "command's directory: choose another --out")
        if owner is not None:
            return
    doc = {"command": command, "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    write_text(marker, json.dumps(doc) + "\n")


def _holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _acquire(out: Path, command: str) -> Path:
    path = out / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "started_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            pid, host = holder.get("pid"), holder.get("host")
            if host == me["host"] and isinstance(pid, int) and not _alive(pid):
                log.warning("taking over the lock on %s left by process %s (%s), which is no longer running",
                            out, pid, holder.get("command"))
                path.unlink(missing_ok=True)
                continue
            if not holder:  # written but not yet filled by a process starting right now, or damaged
                raise RunDirError(f"--out {out} is locked ({path} exists); if no run is writing it, delete that file") from None
            raise RunDirError(f"--out {out} is being written by `{holder.get('command')}` (pid {pid} on {host}, "
                              f"since {holder.get('started_utc')}); wait for it to finish or choose another --out") from None
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS):
                raise RunDirError(f"--out {out}: the directory is not writable ({exc.strerror})") from None
            raise
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me) + "\n")
        return path
    raise RunDirError(f"--out {out}: could not take the lock {path}")


@contextlib.contextmanager
def run_directory(out: str | Path, command: str) -> Iterator[Path]:
    """Check, claim and lock `out` for `command` for the body; the lock is released on exit. A directory this
    call created is removed again when the body fails before writing anything into it."""
    out = Path(out)
    created = not out.exists()
    out = check_writable(out)
    lock = _acquire(out, command)
    ok = False
    try:
        _claim(out, command)
        yield out
        ok = True
    finally:
        if _holder(lock).get("pid") == os.getpid():
            lock.unlink(missing_ok=True)
        if created and not ok and {p.name for p in out.iterdir()} <= {MARKER_NAME}:
            (out / MARKER_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()


def results_to_reuse(path: str | Path, *, config: Mapping[str, Any], config_hash: str,
                     inputs: Mapping[str, Any] | None = None, overwrite: bool = False,
                     extends: tuple[str, ...] = ()) -> bool:
    """Decide what to do with an existing results file at `path` before computing new results.

    True: it is the finished result of this config and these inputs; reuse it. False: there is none, it cannot be
    read, or its inputs changed (the data, the model, a store it was computed from): compute (logged, naming why).
    A results file of another config is never overwritten silently: RunDirError naming the differing fields,
    unless `overwrite` (--overwrite) is set, or the config differs only in fields that extend a run (`extends`,
    e.g. eval's --variants, whose finished rows are kept): those are recomputed with a log message.
    """
    path = Path(path)
    if not path.exists():
        return False
    try:
        old = json.loads(path.read_text())
        old = old.get("header", old)  # typed results keep config, hash and inputs in their header
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        log.warning("%s is unreadable (%s): computing the results again", path, exc)
        return False
    if old.get("config_hash") != config_hash:
        before = old.get("config") or {}
        diff = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
        if overwrite or (diff and set(diff) <= set(extends) | set(RELABELS)):
            log.warning("replacing %s, made with another config (%s)", path,
                        "--overwrite" if overwrite else "changed: " + ", ".join(diff))
            return False
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {config.get(k)!r}" for k in diff[:6]) or "(not recorded)"
        raise RunDirError(f"{path} holds results of another config ({shown}); choose another --out, or rerun with "
                          "--overwrite to replace them (finished captures in the directory are kept)")
    if inputs is not None and old.get("inputs") != dict(inputs):
        changed = sorted(k for k in inputs if (old.get("inputs") or {}).get(k) != inputs[k]) or ["(not recorded)"]
        log.warning("%s was computed from other inputs (%s changed): computing it again", path, ", ".join(changed))
        return False
    return True
