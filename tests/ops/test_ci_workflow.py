"""The CI retraining workflow: schema-valid, triggered by the right paths, calling the script."""

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "retrain.yml"


def test_workflow_is_valid_against_github_schema():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_triggers_and_calls_the_local_script():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as boolean true
    for event in ("push", "pull_request"):
        assert set(triggers[event]["paths"]) == {"params.yaml", "dvc.yaml", "src/**", "pipelines/**"}
    steps = workflow["jobs"]["retrain"]["steps"]
    runs = " ".join(step.get("run", "") for step in steps)
    assert "scripts/retrain.sh" in runs
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in steps)
    assert any(step.get("uses", "").startswith("actions/cache") for step in steps)
    assert (REPO_ROOT / "scripts" / "retrain.sh").stat().st_mode & 0o111
