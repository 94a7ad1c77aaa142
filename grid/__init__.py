"""The sweep engine: a JSON grid read into cells (`plan`), run one after another or on Ray (`executors`), each cell
a `python cli.py METHOD ...` subprocess (`cellrun`), with progress counts and an estimate (`progress`).

It knows no command: `commands.sweep` describes each command to it as a `Method` read from the command registry.
"""

from grid.cellrun import CELL_JSON, CELL_LOG, RESULTS
from grid.executors import Event, Launch, RayExecutor, SerialExecutor
from grid.plan import AXES, Cell, Method, Resources, load_spec, plan, record_status
from grid.progress import Progress, Tracker, duration

__all__ = ["AXES", "CELL_JSON", "CELL_LOG", "RESULTS", "Cell", "Event", "Launch", "Method", "Progress",
           "RayExecutor", "Resources", "SerialExecutor", "Tracker", "duration", "load_spec", "plan", "record_status"]
