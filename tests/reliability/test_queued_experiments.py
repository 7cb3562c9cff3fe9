"""Queued experiments side by side: `dvc queue start --jobs 2` over 4 tiny pipelines, twice.

Each experiment runs every stage of the real pipeline in its own temporary copy of the
repository, all of them logging into the project's one SQLite store at the same time.
Figure reported: experiments that succeeded, and MLflow pipeline runs recorded for them.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_dvc_queue
from tests.tiny_project import DVC, dvc, make_tiny_project, mlflow_runs

EXPERIMENTS = 4
ROUNDS = 2


@pytest.mark.reliability
@pytest.mark.timeout(3600)
def test_four_queued_experiments_two_at_a_time_twice(tmp_path):
    repo, env = make_tiny_project(tmp_path / "repo")
    names = []
    for round_ in range(1, ROUNDS + 1):
        for index in range(1, EXPERIMENTS + 1):
            name = f"r{round_}-seed-{index}"
            queued = dvc(repo, env, "exp", "run", "--queue", "-S", f"common.seed={10 * round_ + index}", "--name", name)
            assert queued.returncode == 0, queued.stderr[-2000:]
            names.append(name)
        status = run_dvc_queue(DVC, repo, env, jobs=2, timeout_s=1500)
    # `dvc queue status` lists every experiment the queue ran, each Success or Failed.
    successes = status.count("Success")

    shown = json.loads(dvc(repo, env, "exp", "show", "--json").stdout)
    shown_names = {exp["name"] for baseline in shown for exp in (baseline.get("experiments") or [])}
    runs = mlflow_runs(repo)
    pipelines = [r for r in runs if r.data.tags.get("ganseg.role") == "pipeline"]
    tracked = {r.data.tags.get("ganseg.dvc_experiment") for r in pipelines}
    left_running = [r.info.run_id for r in runs if r.info.status != "FINISHED"]
    print(f"\n{EXPERIMENTS} queued experiments x {ROUNDS} rounds, --jobs 2: "
          f"{successes}/{len(names)} succeeded, {len(pipelines)} MLflow pipeline runs "
          f"({len(set(names) & tracked)} tagged with their experiment), {len(runs)} runs in all, "
          f"{len(left_running)} not FINISHED")
    assert successes == len(names) and "Failed" not in status, status
    assert set(names) <= shown_names
    assert set(names) <= tracked and len(pipelines) == len(names)
    assert left_running == []

    # Issue 18.1: every seed shares one test split, so each evaluation compares models that
    # never trained on its test images, and says so; none had to refuse a comparison.
    evaluations = [r for r in runs if r.data.tags.get("ganseg.stage") == "evaluate"]
    decisions = [r.data.tags.get("ganseg.registry.decision") for r in evaluations]
    seen = [exp["revs"][0]["data"]["metrics"]["metrics/evaluate.json"]["data"]["test_images_seen_in_training"]
            for baseline in shown for exp in (baseline.get("experiments") or []) if exp.get("name") in names]
    print(f"promotion decisions over {len(evaluations)} evaluations: "
          f"{ {d: decisions.count(d) for d in sorted(set(decisions))} }; test images seen in training: {seen[:2]}...")
    assert len(evaluations) == len(names) and "refused" not in decisions and "promoted" in decisions
    assert all(count == 0 for record in seen for count in record.values()), seen
