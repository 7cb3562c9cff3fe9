"""The aggregate command: from `dvc exp show --json` (saved, or from real queued experiments)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.__main__ import app
from tests.conftest import REPO_ROOT
from tests.evaluation.test_seeds import _exp, _exp_show, _metrics
from tests.helpers import run_dvc_queue

runner = CliRunner()


def test_aggregate_from_saved_json_writes_table_and_json(tmp_path):
    entries = _exp_show([
        _exp("a", "exp-a", 1, _metrics(0.70, 0.73, 0.01, 0.05)),
        _exp("b", "exp-b", 2, _metrics(0.72, 0.74, 0.005, 0.04)),
        _exp("c", "exp-c", 3, _metrics(0.69, 0.725, 0.02, 0.05)),
        _exp("d", "exp-d", 1, _metrics(0.60, 0.58, -0.05, 0.01), epochs=9),  # another group
    ])
    saved = tmp_path / "exps.json"
    saved.write_text(json.dumps(entries))
    out = tmp_path / "seeds.md"
    result = runner.invoke(app, ["aggregate", "--from-json", str(saved), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "## train.epochs=5" in text and "## train.epochs=9" in text
    assert "Seeds: 1, 2, 3" in text and "**improves**" in text and "no claim (needs >= 2 seeds)" in text
    table = json.loads(out.with_suffix(".json").read_text())
    group = next(g for g in table if g["params"] == {"train.epochs": 5})
    assert group["variants"]["real"]["dice"]["per_seed"] == [0.70, 0.72, 0.69]
    assert group["differences"]["synthetic_vs_real"]["dice"]["verdict"] == "improves"


def test_no_experiments_is_a_one_line_error(tmp_path):
    saved = tmp_path / "exps.json"
    saved.write_text(json.dumps(_exp_show([])))
    result = runner.invoke(app, ["aggregate", "--from-json", str(saved), "--out", str(tmp_path / "s.md")])
    assert result.exit_code == 1
    assert "no experiment with metrics/evaluate.json" in result.stderr and "dvc exp run --queue" in result.stderr


@pytest.mark.slow
def test_queued_dvc_experiments_are_aggregated(tmp_path):
    """The documented path: `dvc exp run --queue -S common.seed=...`, then aggregate."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text("common:\n  seed: 0\n")
    (repo / "fake_evaluate.py").write_text(
        "import json, os, yaml\n"
        "seed = yaml.safe_load(open('params.yaml'))['common']['seed']\n"
        "os.makedirs('metrics', exist_ok=True)\n"
        "real, syn = 0.7 + seed / 100, 0.72 + seed / 100\n"
        "json.dump({'variants': {'real': {'dice': real}, 'synthetic': {'dice': syn}},\n"
        "           'differences': {'synthetic_vs_real': {'dice': syn - real, 'dice_low': 0.01, 'dice_high': 0.03}}},\n"
        "          open('metrics/evaluate.json', 'w'))\n"
    )
    (repo / "dvc.yaml").write_text(
        "stages:\n  evaluate:\n    cmd: python fake_evaluate.py\n    deps: [fake_evaluate.py]\n"
        "    params: [common]\n    metrics:\n      - metrics/evaluate.json:\n          cache: false\n"
    )
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": f"{REPO_ROOT / 'src'}:{REPO_ROOT}"}

    def run(*command):
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done

    run("git", "init", "-q")
    run(str(bin_dir / "dvc"), "init", "-q")
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    for seed in (1, 2, 3):
        run(str(bin_dir / "dvc"), "exp", "run", "--queue", "-S", f"common.seed={seed}")
    status = run_dvc_queue(bin_dir / "dvc", repo, env, jobs=1, timeout_s=240)
    assert status.count("Success") == 3, status
    done = run(sys.executable, "-m", "pipelines", "aggregate", "--out", "reports/seeds.md")
    assert "3 seed(s)" in done.stdout
    text = (repo / "reports" / "seeds.md").read_text()
    assert "Seeds: 1, 2, 3" in text and "**improves**" in text
    shutil.rmtree(repo / ".dvc" / "tmp", ignore_errors=True)


def test_aggregate_from_project_folders(tmp_path):
    import yaml

    folders = []
    for seed, real, synthetic in ((1, 0.70, 0.73), (2, 0.72, 0.74), (3, 0.69, 0.725)):
        folder = tmp_path / f"seed{seed}"
        (folder / "metrics").mkdir(parents=True)
        (folder / "params.yaml").write_text(yaml.safe_dump({"common": {"seed": seed}, "train": {"epochs": 40}}))
        (folder / "metrics" / "evaluate.json").write_text(json.dumps(_metrics(real, synthetic, 0.01, 0.05)))
        folders += ["--run", str(folder)]
    out = tmp_path / "seeds.md"
    result = runner.invoke(app, ["aggregate", *folders, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Seeds: 1, 2, 3" in out.read_text() and "**improves**" in out.read_text()
    missing = runner.invoke(app, ["aggregate", "--run", str(tmp_path / "nowhere"), "--out", str(out)])
    assert missing.exit_code == 1 and "nowhere: needs params.yaml" in missing.stderr


def test_hd95_worse_in_every_seed_is_written_as_worsens(tmp_path):
    experiments = []
    for rev, seed, shift in (("a", 1, 1.0), ("b", 2, 1.2), ("c", 3, 0.9)):
        metrics = _metrics(0.70, 0.73, 0.01, 0.05)
        metrics["differences"]["synthetic_vs_real"].update(hd95=shift, hd95_low=shift - 0.5, hd95_high=shift + 0.5)
        experiments.append(_exp(rev, f"exp-{rev}", seed, metrics))
    saved = tmp_path / "exps.json"
    saved.write_text(json.dumps(_exp_show(experiments)))
    out = tmp_path / "seeds.md"
    result = runner.invoke(app, ["aggregate", "--from-json", str(saved), "--out", str(out)])
    assert result.exit_code == 0, result.output
    row = next(line for line in out.read_text().splitlines() if line.startswith("| synthetic − real"))
    assert row.endswith("| +1.03 ± 0.15 [+0.65, +1.41] | **worsens** |"), row
    assert "**improves** |" in row  # the Dice column of the same row
    group = json.loads(out.with_suffix(".json").read_text())[0]
    assert group["differences"]["synthetic_vs_real"]["hd95"]["verdict"] == "worsens"
