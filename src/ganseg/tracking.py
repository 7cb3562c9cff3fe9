"""Experiment tracking: the only module that imports mlflow.

Store. By default a SQLite database at ``<root>/mlruns/mlflow.db`` (the model registry needs a
database store) with artifacts under ``<root>/mlruns/artifacts``. ``MLFLOW_TRACKING_URI``
overrides it (a team server, PostgreSQL, ...). The SQLite file is switched to WAL mode and
opened with a long busy timeout so that parallel stages and queued experiments do not fail
with "database is locked"; the first creation of the schema is serialised with a file lock.

Grouping. All stage runs of one ``dvc repro`` (or one ``dvc exp run``) are nested under one
parent run named ``pipeline <key>`` and share the tag ``ganseg.pipeline_run=<key>``. The key
is ``GANSEG_PIPELINE_RUN`` when set (CI and scripts set it to group explicitly); otherwise the
pid and start time of the nearest ancestor ``dvc`` process, which every stage of one
invocation shares; a stage run by hand gets a fresh key.

Failure policy. Tracking never costs the stage its own outputs: when the store is unreachable
or a logging call fails, the stage warns once (one line) and carries on without tracking,
unless ``common.tracking_required`` is true, in which case it fails before doing any work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import mlflow
import psutil
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from ganseg.errors import GansegError
from ganseg.io import file_sha256

EXPERIMENT_NAME = "ganseg"
PIPELINE_TAG = "ganseg.pipeline_run"
STAGE_TAG = "ganseg.stage"
ROLE_TAG = "ganseg.role"
PID_TAG = "ganseg.pid"
DVC_EXP_TAG = "ganseg.dvc_experiment"
SQLITE_BUSY_TIMEOUT_S = 60


class TrackingError(GansegError):
    """The tracking store cannot be used and ``common.tracking_required`` is true."""


def quiet_mlflow() -> None:
    """MLflow settings for stages, called where tracking is set up (``StageRun``, ``Registry``);
    a variable the user has set wins. Telemetry is switched off before mlflow is imported, by
    the stage runner (``pipelines.stage.run_stage``): mlflow reads it on import."""
    # An unreachable server should fail in seconds, not after minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    # Registering a model otherwise shells out to pip to infer requirements.
    os.environ.setdefault("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")
    # Per-file download progress bars are noise in stage logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Schema-migration chatter ("Creating initial MLflow database tables") is not for users.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="mlflow")


def default_tracking_uri(root: Path) -> str:
    db = (Path(root) / "mlruns" / "mlflow.db").resolve()
    # pysqlite reads ``timeout`` from the URL: the busy timeout of every connection.
    return f"sqlite:///{db}?timeout={SQLITE_BUSY_TIMEOUT_S}"


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root)


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _init_store(uri: str) -> str:
    """Make the store usable: schema created once, WAL on, experiment present.

    A SQLite store keeps its artifacts in ``artifacts/`` beside the database file.
    """
    mlflow.set_tracking_uri(uri)
    db = _sqlite_path(uri)
    lock = db.with_suffix(".lock") if db else None
    with _file_lock(lock) if lock else contextlib.nullcontext():
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(db, timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        client = MlflowClient(uri)  # creates the schema on first use, under the lock
        experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
        if experiment is None:
            location = (db.parent / "artifacts").resolve().as_uri() if db is not None else None
            # The UI then opens the experiment on its training-runs table, not the GenAI views.
            kind = {"mlflow.experimentKind": "custom_model_development"}
            return client.create_experiment(EXPERIMENT_NAME, artifact_location=location, tags=kind)
        return experiment.experiment_id


def pipeline_key() -> str:
    """Identify the current pipeline invocation (see the module docstring)."""
    explicit = os.environ.get("GANSEG_PIPELINE_RUN")
    if explicit:
        return explicit
    # stage <- sh <- dvc, a few more for wrappers such as `dvc exp`
    for ancestor in psutil.Process().parents()[:8]:
        try:
            words = [Path(part).name for part in ancestor.cmdline()[:3]]
            if "dvc" in words:
                return f"dvc-{ancestor.pid}-{int(ancestor.create_time())}"
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            break
    return f"solo-{uuid.uuid4().hex[:12]}"


class StageRun:
    """One stage's MLflow run, nested under its pipeline run; a no-op when tracking is off.

    Use as a context manager: the run ends FINISHED on success, FAILED on an exception and
    KILLED on Ctrl-C / SIGTERM (the stage layer turns SIGTERM into KeyboardInterrupt).
    """

    def __init__(self, stage: str, root: Path, required: bool = False, run_name: str | None = None):
        quiet_mlflow()
        self.stage = stage
        self.root = Path(root)
        self.required = required
        self.run_name = run_name or stage
        self.run_id: str | None = None
        self._client: MlflowClient | None = None
        self._warned = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            uri = tracking_uri(self.root)
            experiment_id = _init_store(uri)
            self._client = MlflowClient(uri)
            mark_dead_runs_killed(self._client, experiment_id)
            key = pipeline_key()
            parent_id = self._pipeline_parent(experiment_id, key)
            experiment_name = os.environ.get("DVC_EXP_NAME")
            tags = {
                PIPELINE_TAG: key,
                STAGE_TAG: self.stage,
                ROLE_TAG: "stage",
                PID_TAG: f"{os.uname().nodename}:{os.getpid()}",
                "mlflow.parentRunId": parent_id,
            }
            if experiment_name:  # set by `dvc exp run`: find a DVC experiment's runs by name
                tags[DVC_EXP_TAG] = experiment_name
            run = self._client.create_run(experiment_id, run_name=self.run_name, tags=tags)
            self.run_id = run.info.run_id
        except Exception as exc:  # noqa: BLE001 - any store failure has the same policy
            self._give_up(f"cannot open the tracking store ({_short(exc)})")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.run_id is None or self._client is None:
            return
        if exc_type is None:
            status = RunStatus.to_string(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.to_string(RunStatus.KILLED)
        else:
            status = RunStatus.to_string(RunStatus.FAILED)
        self._call("set_terminated", self.run_id, status)

    def _pipeline_parent(self, experiment_id: str, key: str) -> str:
        assert self._client is not None
        found = self._client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PIPELINE_TAG}` = '{key}' and tags.`{ROLE_TAG}` = 'pipeline'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        experiment_name = os.environ.get("DVC_EXP_NAME")
        tags = {PIPELINE_TAG: key, ROLE_TAG: "pipeline"}
        if experiment_name:
            tags[DVC_EXP_TAG] = experiment_name
        parent = self._client.create_run(
            experiment_id,
            run_name=f"pipeline {experiment_name or key}",
            tags=tags,
        )
        # The parent only groups; it holds no work of its own, so it is never left RUNNING.
        self._client.set_terminated(parent.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        return parent.info.run_id

    # -- failure policy ----------------------------------------------------------------------
    def _give_up(self, reason: str) -> None:
        if self.required:
            raise TrackingError(
                f"MLflow tracking at {tracking_uri(self.root)}: {reason} "
                "(common.tracking_required is true)"
            )
        if not self._warned:
            print(f"warning: tracking disabled for stage '{self.stage}': {reason}", file=sys.stderr)
            self._warned = True
        self.run_id = None

    def _call(self, method: str, *args, **kwargs) -> Any:
        """Call ``MlflowClient.<method>`` (or a callable) under the failure policy."""
        if self.run_id is None or self._client is None:
            return None
        fn = getattr(self._client, method) if isinstance(method, str) else method
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            self._give_up(f"{getattr(fn, '__name__', 'logging')} failed ({_short(exc)})")
            return None

    @property
    def active(self) -> bool:
        return self.run_id is not None

    # -- logging -----------------------------------------------------------------------------
    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self._call("set_tag", self.run_id, key, str(value))

    def log_params(self, params: dict[str, Any], prefix: str = "") -> None:
        flat = flatten(params, prefix)
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        for start in range(0, len(items), 100):
            self._call("log_batch", self.run_id, params=items[start : start + 100])

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        self._call("log_metric", self.run_id, name, float(value), step=step or 0)

    def step_log(self) -> StepLog:
        """The ``log(name, value, step)`` callable every training loop receives."""
        return StepLog(self)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        for start in range(0, len(items), 500):
            self._call("log_batch", self.run_id, metrics=items[start : start + 500])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self._call("log_artifacts", self.run_id, str(path), artifact_path)
        elif path.exists():
            self._call("log_artifact", self.run_id, str(path), artifact_path)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        self._call("log_dict", self.run_id, data, artifact_file)

    # -- models ------------------------------------------------------------------------------
    def log_model(
        self,
        model: Any,
        *,
        registered_name: str,
        weights_file: Path,
        config_file: Path,
        input_example: Any,
        output_example: Any,
        tags: dict[str, str] | None = None,
    ) -> str | None:
        """Log ``model`` and register it as a new version of ``registered_name``.

        The MLflow pytorch flavour is logged for the UI and for users who want
        ``mlflow.pytorch.load_model``; ganseg itself never unpickles it: it loads the
        ``weights_file`` (a state dict, ``weights_only=True``) and the JSON ``config_file``
        stored beside it as extra files. Returns the registered version, or None untracked.
        """
        if self.run_id is None:
            return None
        import mlflow.pytorch
        from mlflow.models import infer_signature

        def _log() -> str:
            with mlflow.start_run(run_id=self.run_id):
                info = mlflow.pytorch.log_model(
                    model,
                    name="model",
                    signature=infer_signature(input_example, output_example),
                    input_example=input_example,
                    extra_files=[str(weights_file), str(config_file)],
                    pip_requirements=[f"torch=={_torch_version()}"],
                    registered_model_name=registered_name,
                    await_registration_for=30,
                )
            version = str(info.registered_model_version)
            # Lets evaluate find the version of a local model file by its content.
            all_tags = {WEIGHTS_SHA256_TAG: file_sha256(weights_file), **(tags or {})}
            for key, value in all_tags.items():
                self._client.set_model_version_tag(registered_name, version, key, str(value))
            return version

        return self._call(_log)


class StepLog:
    """``log(name, value, step)`` for the training loops: the values of one step reach MLflow
    as one batch (a loop logs a whole row at a time), sent when the step changes and on
    :meth:`flush`. The one path by which trainers log metrics."""

    def __init__(self, run: StageRun):
        self.run = run
        self.step: int | None = None
        self.values: dict[str, float] = {}

    def __call__(self, name: str, value: float, step: int) -> None:
        if self.step is not None and step != self.step:
            self.flush()
        self.step = step
        self.values[name] = float(value)

    def flush(self) -> None:
        if self.step is not None and self.values:
            self.run.log_metrics(self.values, step=self.step)
        self.step, self.values = None, {}


def _torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def mark_dead_runs_killed(client: MlflowClient, experiment_id: str) -> int:
    """Runs left RUNNING by a process of this host that no longer exists become KILLED."""
    host = os.uname().nodename
    running = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=500
    )
    killed = 0
    for run in running:
        owner = run.data.tags.get(PID_TAG, "")
        node, _, pid = owner.rpartition(":")
        if node != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        if not Path(f"/proc/{pid}").exists():
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            killed += 1
    return killed


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and paths become strings."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = value
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# -- model registry ------------------------------------------------------------------------------
WEIGHTS_SHA256_TAG = "ganseg.weights_sha256"
MODEL_URI_PREFIX = "models:/"


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as ganseg needs it (no mlflow types leak out)."""

    name: str
    version: str
    run_id: str | None
    tags: dict[str, str]
    aliases: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"{MODEL_URI_PREFIX}{self.name}/{self.version}"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name/3`` -> (name, "3", None); ``models:/name@champion`` -> (name, None, "champion")."""
    body = uri.removeprefix(MODEL_URI_PREFIX).strip("/")
    if not uri.startswith(MODEL_URI_PREFIX) or not body:
        raise GansegError(f"{uri}: not a model URI (expected models:/<name>/<version> or models:/<name>@<alias>)")
    if "@" in body:
        name, _, alias = body.partition("@")
        if name and alias and "/" not in alias:
            return name, None, alias
    else:
        name, _, version = body.rpartition("/")
        if name and version.isdigit():
            return name, version, None
    raise GansegError(f"{uri}: not a model URI (expected models:/<name>/<version> or models:/<name>@<alias>)")


class Registry:
    """The model registry of this project's tracking store: look-ups, aliases, model files.

    Every failure to reach the store or a missing model/alias becomes a :class:`TrackingError`
    (a one-line :class:`GansegError`); callers decide whether that stops the stage.
    """

    def __init__(self, root: Path):
        quiet_mlflow()
        self.uri = tracking_uri(Path(root))
        try:
            _init_store(self.uri)
        except Exception as exc:  # noqa: BLE001 - any store failure reads the same to the user
            raise TrackingError(f"MLflow registry at {self.uri}: cannot open the store ({_short(exc)})") from None
        self._client = MlflowClient(self.uri, registry_uri=self.uri)

    @contextlib.contextmanager
    def promotion_lock(self) -> Iterator[None]:
        """Serialise read-champion / compare / set-alias across processes on a local store.

        Two evaluations finishing at once would otherwise both compare against the old
        champion and the later write would win. A tracking server has no such lock: there,
        run promotions one at a time (docs/reliability.md).
        """
        db = _sqlite_path(self.uri)
        with _file_lock(db.with_suffix(".promote.lock")) if db else contextlib.nullcontext():
            yield

    def _wrap(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise TrackingError(f"MLflow registry at {self.uri}: {what} failed ({_short(exc)})") from None

    def _info(self, mv) -> ModelVersion:
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or None,
            tags=dict(mv.tags or {}),
            aliases=tuple(getattr(mv, "aliases", None) or ()),
        )

    def versions_of_file(self, name: str, path: Path) -> list[ModelVersion]:
        """Versions of ``name`` whose weights file has the content of ``path``, newest first."""
        sha = file_sha256(path)
        found = self._wrap(
            "searching model versions",
            self._client.search_model_versions,
            f"name = '{name}' and tags.`{WEIGHTS_SHA256_TAG}` = '{sha}'",
        )
        return sorted((self._info(mv) for mv in found), key=lambda v: -int(v.version))

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points to, or None when the model or the alias does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self._client.get_model_version_by_alias(name, alias))
        except MlflowException as exc:
            if "not found" in str(exc).lower() or "RESOURCE_DOES_NOT_EXIST" in str(exc):
                return None
            raise TrackingError(f"MLflow registry at {self.uri}: reading alias {name}@{alias} failed ({_short(exc)})") from None
        except Exception as exc:  # noqa: BLE001
            raise TrackingError(f"MLflow registry at {self.uri}: reading alias {name}@{alias} failed ({_short(exc)})") from None

    def set_alias(self, name: str, alias: str, version: str) -> bool:
        """Point ``alias`` at ``version``; False (and nothing written) when it already does."""
        current = self.alias(name, alias)
        if current is not None and current.version == str(version):
            return False
        self._wrap(f"setting alias {name}@{alias}", self._client.set_registered_model_alias, name, alias, str(version))
        return True

    def delete_alias(self, name: str, alias: str) -> bool:
        """Remove ``alias``; False (and nothing written) when it does not exist."""
        if self.alias(name, alias) is None:
            return False
        self._wrap(f"deleting alias {name}@{alias}", self._client.delete_registered_model_alias, name, alias)
        return True

    def resolve(self, uri: str) -> ModelVersion:
        """The version a ``models:/name/<version>`` or ``models:/name@<alias>`` URI names."""
        name, version, alias = parse_model_uri(uri)
        if alias is not None:
            found = self.alias(name, alias)
            if found is None:
                raise TrackingError(f"{uri}: no such model or alias in the registry at {self.uri}")
            return found
        return self._info(self._wrap(f"looking up {uri}", self._client.get_model_version, name, version))

    def download_model_files(self, version: ModelVersion, dest: Path) -> Path:
        """Download only the weights and config files stored with ``version`` into ``dest``.

        Returns the folder holding them (``weights_file`` and ``config_file`` of
        :meth:`StageRun.log_model`); the pickled pytorch flavour is not downloaded.
        """
        import mlflow.artifacts

        root = self._wrap(
            f"locating {version.uri}", self._client.get_model_version_download_uri, version.name, version.version
        )
        Path(dest).mkdir(parents=True, exist_ok=True)
        folder = self._wrap(
            f"downloading {version.uri}",
            mlflow.artifacts.download_artifacts,
            artifact_uri=f"{str(root).rstrip('/')}/extra_files",
            dst_path=str(dest),
        )
        return Path(folder)
