"""Is semi-supervised adversarial fine-tuning worth more than the same steps without it?

    .venv/bin/python benchmarks/finetune_control.py --seeds 1 2 3 --out /tmp/ft_control \\
        --set train.steps=800 --set train.val_interval=100 --set train.patch_size=128 \\
        --set train.batch_size=8 --set evaluate.mirror=false

Fine-tuning trains more steps on top of its start, so "fine-tuned - real" mixes the
adversarial and unlabeled losses with training length. This runs, per seed on DSB 2018 with
``params/dsb.overrides`` (or ``--embedded``: params.yaml's own data), the stages with
``dvc.yaml``'s command lines, and no GAN:

- ``prepare``, then ``train --variant real``;
- ``finetune --start models/unet_real.pt --variant semi``: the finetune block as configured
  (adversarial loss, and the unlabeled images of prepare's split when ``unlabeled.enabled``);
- ``finetune --start models/unet_real.pt --variant continued``, the control: the same block,
  start, steps, batch, learning-rate schedule, augmentation and best-validation choice, with
  ``adv_weight: 0`` and ``unlabeled.enabled: false``, so the only difference is what the
  discriminator and the unlabeled images add;
- ``evaluate`` of real, continued and semi on the shared test split, then ``aggregate --run``
  over the seeds (``<out>/seeds.md``): continued - real (what more steps buy), semi - real
  (the issue's comparison) and semi - continued (what the adversarial fine-tuning itself buys),
  each with its verdict over seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.gan_help import aggregate_seeds, base_params, run_seed, seed_params, seeds_arguments, stage_commands
from ganseg.config.base import _deep_merge

VARIANTS = ["real", "continued", "semi"]
STAGES = ("prepare", "train@real", "finetune@semi", "finetune@continued", "evaluate")
CONTROL = {"finetune": {"adv_weight": 0.0, "unlabeled": {"enabled": False}}}


def commands() -> dict[str, list[str]]:
    """dvc.yaml's lines for prepare, train@real and evaluate; its finetune line from the real model."""
    dvc = stage_commands(REPO / "dvc.yaml")

    def finetune(variant: str, params: str) -> list[str]:
        words = list(dvc["finetune"])
        words[words.index("--start") + 1] = "models/unet_real.pt"
        words[words.index("--params") + 1] = params
        return [*words, "--variant", variant]

    return {"prepare": dvc["prepare"], "train@real": dvc["train@real"], "evaluate": dvc["evaluate"],
            "finetune@semi": finetune("semi", "params.yaml"),
            "finetune@continued": finetune("continued", "params_continued.yaml")}


def main(argv: list[str] | None = None) -> None:
    args = seeds_arguments(__doc__, argv)
    base = base_params(args, evaluate={"variants": VARIANTS, "baseline": "real"})
    lines = commands()
    times = {}
    for seed in args.seeds:
        params, folder = seed_params(base, seed), args.out / f"seed_{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "params_continued.yaml").write_text(yaml.safe_dump(_deep_merge(params, CONTROL), sort_keys=False))
        times[seed] = run_seed(folder, params, lines, STAGES)
    aggregate_seeds(args.out, times)


if __name__ == "__main__":
    main()
