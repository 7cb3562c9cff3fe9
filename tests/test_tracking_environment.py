"""Importing ganseg.tracking changes nothing; a stage run switches telemetry off before mlflow loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

SETTINGS = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")


def _python(code: str, tmp_path) -> dict:
    """Run ``code`` in a fresh interpreter without any of SETTINGS set; it prints one JSON line."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlflow.db"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_tracking_sets_no_variable_and_no_warning_filter(tmp_path):
    seen = _python(
        "import json, os, warnings\n"
        "import mlflow, numpy, psutil, torch, PIL.Image  # third-party imports add filters of their own\n"
        "before = (dict(os.environ), list(warnings.filters))\n"
        "import ganseg.tracking\n"
        "print(json.dumps({'environ': dict(os.environ) == before[0], 'filters': warnings.filters == before[1]}))\n",
        tmp_path,
    )
    assert seen == {"environ": True, "filters": True}


def test_a_stage_run_turns_telemetry_off_before_mlflow_is_imported(tmp_path):
    seen = _python(
        "import json, os, sys\n"
        "at_import = {}\n"
        "def audit(event, args):\n"
        "    if event == 'import' and args[0] == 'mlflow' and not at_import:\n"
        "        at_import.update({k: os.environ.get(k) for k in ('MLFLOW_DISABLE_TELEMETRY', 'DO_NOT_TRACK')})\n"
        "sys.addaudithook(audit)\n"
        "from pathlib import Path\n"
        "from pipelines.stage import run_stage\n"
        "with run_stage('prepare', Path('params.yaml'), track=False) as ctx:\n"
        "    retries = os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES')\n"
        "print(json.dumps({'at_import': at_import, 'retries': retries}))\n",
        tmp_path,
    )
    assert seen["at_import"] == {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    assert seen["retries"] == "2"  # the tracker's own settings, applied when it is built
