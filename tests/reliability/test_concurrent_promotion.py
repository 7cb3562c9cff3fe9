"""Two evaluations decide promotion at the same moment on one SQLite store: the better model
ends as champion, the other as challenger, whatever the interleaving.

Each process scores the current champion slowly (as evaluate re-evaluates it on the test
split), which is the window in which both would read the same old champion without the lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evaluation.conftest import _store_template, fresh_store  # noqa: F401 - fixtures
from tests.evaluation.fakes import MODEL_NAME, client_for, register_file, tiny_model_file

# Test Dice of each registered version on "this test split".
DICE = {"1": 0.50, "2": 0.70, "3": 0.60}

DECIDER = """
import sys, time
from pathlib import Path
from ganseg.evaluation.bootstrap import Interval
from ganseg.evaluation.promotion import Candidate, ChampionScore, decide_and_apply
from ganseg.tracking import Registry
dice = {dice!r}
root, version = Path(sys.argv[1]), sys.argv[2]
registry = Registry(root)
candidate = Candidate(variant="v" + version, dice=dice[version],
                      versions=tuple(v for v in registry.versions_of_file("{name}", root / f"m{{version}}.pt")))
def score_champion(champion):
    time.sleep({{"2": 0.5, "3": 2.0}}[version])  # re-evaluating the champion takes a while
    gain = dice[version] - dice[champion.version]  # a clear paired difference either way
    return ChampionScore(seen_test_images=0, dice=dice[champion.version],
                         difference=Interval(gain, gain - 0.01, gain + 0.01, 24))
(root / f"ready-{{version}}").touch()  # start deciding together: the worst interleaving
while not all((root / f"ready-{{v}}").exists() for v in ("2", "3")):
    time.sleep(0.01)
with registry.promotion_lock():
    print(decide_and_apply(registry, "{name}", candidate, score_champion).line())
"""


@pytest.mark.reliability
def test_two_promotions_at_once_leave_the_best_model_champion(tmp_path, fresh_store):  # noqa: F811
    for version, seed in (("1", 1), ("2", 2), ("3", 3)):
        model = tiny_model_file(tmp_path / f"m{version}.pt", seed=seed)
        assert register_file(tmp_path, model, f"v{version}") == version
    client = client_for(tmp_path)
    client.set_registered_model_alias(MODEL_NAME, "champion", "1")

    script = DECIDER.format(dice=DICE, name=MODEL_NAME)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{repo / 'src'}:{repo}"}
    deciders = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), version], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for version in ("2", "3")]
    outputs = [p.communicate(timeout=180) for p in deciders]
    assert all(p.returncode == 0 for p in deciders), [err[-2000:] for _, err in outputs]

    # Serialised, either v2 then v3 (v3 challenger) or v3 then v2 (v2 beats v3). Unserialised,
    # both compare with v1 and v3, writing last, would end as champion.
    champion = str(client.get_model_version_by_alias(MODEL_NAME, "champion").version)
    print(f"\nconcurrent promotion: {[out.strip() for out, _ in outputs]} -> champion v{champion}")
    assert champion == "2"
