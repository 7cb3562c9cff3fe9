"""What every stage command shares: params loading, the error edge, signals, tracking.

A stage body runs inside :func:`run_stage`. User errors (:class:`GansegError`) become one
line on stderr and exit code 1; anything unexpected also becomes one line unless ``--debug``
asks for the traceback; Ctrl-C and SIGTERM end the MLflow run as KILLED and exit 130, and so does the death of
the `dvc` process that started the stage (see :mod:`pipelines.dvc_parent`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ganseg import io
from ganseg.config import Params, load_params
from ganseg.errors import GansegError
from pipelines.dvc_parent import stop_with_dvc_parent

ParamsOption = Annotated[Path, typer.Option("--params", help="The params file to read.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")]
ProgressOption = Annotated[
    bool | None, typer.Option("--progress/--no-progress", help="Progress bar; default: only on a terminal.")
]


@dataclass
class StageContext:
    name: str
    params: Params
    params_path: Path
    tracker: Any  # ganseg.tracking.StageRun, imported lazily (mlflow is slow to import)
    root: Path  # the project: its mlruns/ holds the runs and the model registry

    def resolved_config(self) -> dict:
        """The common block and this stage's block, every default filled in."""
        return {
            "common": self.params.common.model_dump(mode="json"),
            self.name: getattr(self.params, self.name).model_dump(mode="json"),
        }

    def save_resolved_config(self, folder: Path) -> Path:
        """Write the resolved config beside the stage's outputs and log it to MLflow."""
        path = Path(folder) / "config.json"
        io.write_json(path, self.resolved_config())
        self.tracker.log_dict(self.resolved_config(), f"{self.name}_config.json")
        return path


def project_root() -> Path:
    """The project whose ``mlruns/`` receives runs and holds the registry: every stage and
    command uses this one. Queued ``dvc exp run``s execute in a temporary copy; DVC_ROOT
    names the real repo."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd())


def telemetry_off() -> None:
    """No library phones home unless the user opted in: set before mlflow is imported."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def run_stage(
    name: str, params_path: Path, debug: bool = False, track: bool = True, run_name: str | None = None
) -> Iterator[StageContext]:
    """Load params, open the stage's MLflow run, and turn failures into one-line errors.

    ``track=False`` gives a tracker whose calls do nothing (DDP ranks other than 0);
    ``run_name`` names the MLflow run (default: the stage name).
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stop_with_dvc_parent()
    try:
        params = load_params(params_path)
        telemetry_off()
        from ganseg.tracking import StageRun  # imports mlflow, which reads the telemetry switch

        root = project_root()
        run = StageRun(name, root, required=params.common.tracking_required, run_name=run_name)
        # Never entered, a StageRun has no run id and every logging call is a no-op.
        with run if track else contextlib.nullcontext(run) as tracker:
            tracker.log_params(
                {"common": params.common.model_dump(mode="json"),
                 name: getattr(params, name).model_dump(mode="json")}
                if hasattr(params, name) else {"common": params.common.model_dump(mode="json")}
            )
            yield StageContext(name=name, params=params, params_path=Path(params_path), tracker=tracker, root=root)
    except GansegError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail(f"stage '{name}' interrupted; outputs of this run were not written", 130)
    except typer.Exit:
        raise
    except Exception as exc:
        if debug:
            raise
        _fail(f"{type(exc).__name__}: {exc} (stage '{name}'; re-run with --debug for the traceback)", 1)


def _fail(message: str, code: int) -> None:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"error: {first_line}", file=sys.stderr)
    raise typer.Exit(code)
