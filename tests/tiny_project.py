"""A committed copy of this repository shrunk to a tiny config: the real stages in seconds.

Shared by the end-to-end test and the fault-injection suite: both run the real `dvc.yaml`
stages, through `dvc`, in a throwaway git repository with its own `mlruns/` store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

DVC = Path(sys.executable).parent / "dvc"

# Shrinks each stage to seconds; a block is applied only if params.yaml has it.
TINY = {
    "common": {"image_size": 32},
    # The default's few-label shares leave 3 of 24 pairs for training: the old shares, plus a
    # small unlabeled share so that finetune's semi-supervised mode reads prepare's folder.
    "prepare": {"synthetic": {"num_images": 24},
                "split": {"train": 0.6, "val": 0.15, "test": 0.15, "unlabeled": 0.1}},
    "augment": {"steps": 6, "batch_size": 4, "num_samples": 8, "log_interval": 3, "sample_interval": 3,
                "checkpoint_interval": 3, "grid_samples": 4, "pix2pix": {"base_channels": 8},
                "discriminator": {"base_channels": 8, "layers": 2},
                "consistency": {"steps": 3, "base_channels": 4, "batch_size": 4},
                "filter": {"min_relative_dice": 0.0},  # a 3-step reference segmenter's scores say nothing
                "quality": {"max_images": 8, "kid_subset_size": 4, "kid_subsets": 5}},
    # Explicit plan (nothing measured): kill/resume runs are compared with uninterrupted ones.
    "train": {"steps": 12, "val_interval": 6, "patch_size": 32, "batch_size": 4,
              "model": {"depth": 2, "base_width": 4}, "overlay_images": 2},
    "finetune": {"epochs": 1, "steps": None, "val_interval": None, "batch_size": 4, "discriminator": {"base_channels": 8, "layers": 2},
                 "overlay_images": 2},
    "evaluate": {"bootstrap": {"resamples": 200}, "overlays": {"count": 2},
                 "synthetic_quality": {"max_images": 8, "kid_subset_size": 4, "kid_subsets": 5}},
}


# Loaded into every Python process of the pipeline (dvc, each stage, mlflow): records any
# connection attempt to a non-loopback address, then lets it fail as on an offline machine.
SOCKET_GUARD = """
import ipaddress, os, socket
_connect = socket.socket.connect
def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            with open(os.environ["GANSEG_SOCKET_LOG"], "a") as log:
                log.write(f"{os.getpid()} {host}:{address[1]}\\n")
            raise OSError(101, "network blocked by the test's socket guard")
    return _connect(self, address)
socket.socket.connect = _guarded
"""


def copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO_ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO_ROOT / name.decode()
        if source.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out



def make_tiny_project(repo: Path, socket_guard: bool = True, extra: dict | None = None) -> tuple[Path, dict]:
    """Copy the repository into ``repo`` with TINY (then ``extra``) merged into params.yaml.

    Returns the repo and the environment to run `dvc` in. With ``socket_guard`` every Python
    process records (and fails) connection attempts to non-loopback addresses in
    ``repo.parent / "sockets.log"``.
    """
    copy_repo(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params = merge(params, {k: v for k, v in TINY.items() if k in params})
    params = merge(params, extra or {})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "dvc.lock").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GANSEG_PIPELINE_RUN", "DVC_STAGE")}
    bin_dir = str(Path(sys.executable).parent)
    python_path = [str(repo / "src"), str(repo)]
    if socket_guard:
        guard = repo.parent / "guard"
        guard.mkdir(exist_ok=True)
        (guard / "sitecustomize.py").write_text(SOCKET_GUARD)
        python_path.insert(0, str(guard))
        env["GANSEG_SOCKET_LOG"] = str(repo.parent / "sockets.log")
    # DVC experiments commit to git: give them an identity even where git has none configured.
    env.update(GIT_AUTHOR_NAME="ganseg-e2e", GIT_AUTHOR_EMAIL="e2e@localhost",
               GIT_COMMITTER_NAME="ganseg-e2e", GIT_COMMITTER_EMAIL="e2e@localhost")
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=":".join(python_path),
               VIRTUAL_ENV=str(Path(sys.executable).parents[1]))
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=repo, check=True, env=env)
    return repo, env


def dvc(repo: Path, env: dict, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(DVC), *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def mlflow_runs(repo: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ganseg")
    return client.search_runs([experiment.experiment_id], max_results=1000)
