"""benchmarks/finetune_control.py: its stages are dvc.yaml's, and its control differs from the
fine-tuning it controls only in the two losses."""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmarks import finetune_control
from ganseg.config.base import _deep_merge, load_params, load_yaml

REPO = Path(__file__).resolve().parents[2]


def test_both_finetunes_start_from_the_real_model_and_differ_only_in_their_params():
    lines = finetune_control.commands()
    assert set(lines) == set(finetune_control.STAGES)
    semi, control = lines["finetune@semi"], lines["finetune@continued"]
    for words, variant, params in ((semi, "semi", "params.yaml"), (control, "continued", "params_continued.yaml")):
        assert words[words.index("--start") + 1] == "models/unet_real.pt"
        assert words[words.index("--variant") + 1] == variant
        assert words[words.index("--params") + 1] == params
        assert words.count("--params") == 1
    assert without(semi, "--variant", "--params") == without(control, "--variant", "--params")


def without(words: list[str], *options: str) -> list[str]:
    """The command line less each of ``options`` and its value."""
    kept, skip = [], False
    for word in words:
        if word in options:
            skip = True
        elif skip:
            skip = False
        else:
            kept.append(word)
    return kept


def test_the_control_params_turn_off_only_the_adversarial_and_unlabeled_losses(tmp_path):
    base = load_yaml(REPO / "params.yaml")
    path = tmp_path / "params_continued.yaml"
    path.write_text(yaml.safe_dump(_deep_merge(base, finetune_control.CONTROL)))
    shipped, control = load_params(REPO / "params.yaml").finetune, load_params(path).finetune
    assert shipped.adv_weight > 0 and shipped.unlabeled.enabled
    assert control.adv_weight == 0 and not control.unlabeled.enabled
    differing = {key for key, value in shipped.model_dump().items() if control.model_dump()[key] != value}
    assert differing == {"adv_weight", "unlabeled"}
