"""Champion / challenger: which registered model version serves, decided on this run's test split.

Rules (``decide_and_apply``), in order:
1. The candidate is this run's best model by test Dice. If it has no registered version (the
   train stage ran with tracking off), nothing changes (``skipped``).
2. A comparison is made only on test images that no compared model learned from
   (:mod:`ganseg.data.provenance`): when the candidate's record shows test images among its
   training images, or has no record, nothing changes (``refused``, with the count).
3. No champion yet: the candidate becomes ``champion``.
4. The champion *is* the candidate (same version, or a version whose weights file has the same
   content): nothing changes (``kept``).
5. Otherwise the champion's own files are downloaded. When its record shows test images among
   its training images, or it has no record (registered before ganseg kept one), nothing
   changes (``refused``): such a comparison would score it on images it trained on.
6. The champion is scored on this run's test split (a stored score from another split would
   not be comparable). The candidate becomes ``champion`` only when the paired difference of
   per-image test Dice (candidate − champion, the same images) has the lower end of its
   interval above ``min_improvement`` (default 0: the interval excludes 0); else it becomes
   ``challenger``. A higher point estimate alone is not enough: the candidate is the best of
   several variants on this very split, so its point estimate is biased upwards.
7. If the champion cannot be evaluated on this split (e.g. it was trained for other channels
   or classes), the candidate becomes ``challenger`` and the reason is logged: promoting
   across tasks is left to a person (use one ``evaluate.registry.model_name`` per task).

A promoted version loses a ``challenger`` alias it held. Setting an alias that already points
to the version writes nothing, so a forced re-run with nothing new changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ganseg.errors import GansegError
from ganseg.evaluation.bootstrap import Interval


class RegistryLike(Protocol):  # ganseg.tracking.Registry; a protocol keeps mlflow out of tests' way
    def alias(self, name: str, alias: str) -> Any: ...

    def set_alias(self, name: str, alias: str, version: str) -> bool: ...

    def delete_alias(self, name: str, alias: str) -> bool: ...


@dataclass(frozen=True)
class Candidate:
    variant: str
    dice: float
    versions: tuple[Any, ...]  # registered versions holding this exact model file, newest first
    seen_test_images: int | None = 0  # test images it learned from; None = it records none


@dataclass(frozen=True)
class ChampionScore:
    """The champion on this run's test split: what ``score_champion`` returns."""

    seen_test_images: int | None  # test images it learned from; None = it records none
    dice: float | None = None  # its mean test Dice (None when not scored)
    difference: Interval | None = None  # candidate − champion, paired over the same test images


@dataclass(frozen=True)
class PromotionRule:
    min_improvement: float = 0.0
    confidence: float = 0.95

    def describe(self) -> str:
        return (f"promote only when the {self.confidence:.0%} interval of the paired test-Dice difference "
                f"(candidate − champion, same test images) lies above {self.min_improvement:+.3f}, and only on "
                "test images that neither model learned from")


@dataclass
class Decision:
    action: str  # promoted | kept | challenger | refused | skipped
    reason: str
    model_name: str
    candidate_variant: str
    candidate_version: str | None
    candidate_dice: float
    rule: str = ""
    champion_version_before: str | None = None
    champion_dice: float | None = None  # the previous champion, re-evaluated on this test split
    difference: dict | None = None  # candidate − champion: mean, low, high, n
    aliases_changed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        champion = (
            f"; champion v{self.champion_version_before} Dice {self.champion_dice:.4f}"
            if self.champion_dice is not None
            else ""
        )
        difference = ""
        if self.difference is not None and self.difference.get("mean") is not None:
            d = self.difference
            difference = f"; difference {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] over {d['n']} images"
        version = f" v{self.candidate_version}" if self.candidate_version else ""
        return (
            f"{self.action}: {self.candidate_variant}{version} Dice {self.candidate_dice:.4f}{champion}{difference} "
            f"({self.reason})"
        )


def decide_and_apply(
    registry: RegistryLike,
    model_name: str,
    candidate: Candidate,
    score_champion: Callable[[Any], ChampionScore],
    rule: PromotionRule = PromotionRule(),
    champion_alias: str = "champion",
    challenger_alias: str = "challenger",
) -> Decision:
    """Apply the rules of the module docstring; ``score_champion(version)`` scores the champion."""
    decision = Decision(
        action="skipped",
        reason="",
        model_name=model_name,
        candidate_variant=candidate.variant,
        candidate_version=candidate.versions[0].version if candidate.versions else None,
        candidate_dice=float(candidate.dice),
        rule=rule.describe(),
    )
    if not candidate.versions:
        decision.reason = f"the {candidate.variant} model file is not a registered version of {model_name}"
        return decision
    refusal = _refusal(f"the {candidate.variant} model", candidate.seen_test_images)
    if refusal:
        decision.action, decision.reason = "refused", refusal
        return decision
    newest = candidate.versions[0]
    champion = registry.alias(model_name, champion_alias)
    if champion is None:
        decision.action, decision.reason = "promoted", "no champion yet"
        _promote(registry, model_name, newest.version, champion_alias, challenger_alias, decision)
        return decision

    decision.champion_version_before = champion.version
    if champion.version in {v.version for v in candidate.versions}:
        decision.action, decision.reason = "kept", "the best model of this run is already the champion"
        decision.champion_dice = float(candidate.dice)
        decision.candidate_version = champion.version
        return decision

    try:
        score = score_champion(champion)
    except GansegError as exc:
        decision.action = "challenger"
        decision.reason = f"the champion cannot be evaluated on this test split: {exc}"
    else:
        refusal = _refusal(f"the champion v{champion.version}", score.seen_test_images)
        if refusal:
            decision.action, decision.reason = "refused", refusal
            return decision
        decision.champion_dice = float(score.dice)
        decision.difference = score.difference.as_dict()
        if score.difference.low > rule.min_improvement:
            decision.action, decision.reason = "promoted", "better than the champion on the same test images"
            _promote(registry, model_name, newest.version, champion_alias, challenger_alias, decision)
            return decision
        decision.action, decision.reason = "challenger", (
            "not shown better than the champion on the same test images (the interval of the difference "
            f"reaches {score.difference.low:+.4f})"
        )
    if registry.set_alias(model_name, challenger_alias, newest.version):
        decision.aliases_changed.append(challenger_alias)
    return decision


def _refusal(who: str, seen: int | None) -> str | None:
    """Why no comparison may use this test split for ``who``, or None when it may."""
    if seen is None:
        return (f"{who} records no training images, so the test split may hold images it trained on "
                "(retrain it with this version of ganseg, or move the alias by hand)")
    if seen > 0:
        return f"{who} trained on {seen} of this run's test images; a comparison on them would not be fair"
    return None


def _promote(
    registry: RegistryLike, model_name: str, version: str, champion_alias: str, challenger_alias: str, decision: Decision
) -> None:
    """``champion`` -> ``version``; a ``challenger`` alias on that same version is dropped."""
    if registry.set_alias(model_name, champion_alias, version):
        decision.aliases_changed.append(champion_alias)
    challenger = registry.alias(model_name, challenger_alias)
    if challenger is not None and challenger.version == version:
        registry.delete_alias(model_name, challenger_alias)
        decision.aliases_changed.append(f"-{challenger_alias}")
