"""Champion / challenger: which registered model version serves, decided on this run's test split.

Rules (``decide_and_apply``):
1. The candidate is this run's best model by test Dice. If it has no registered version (the
   train stage ran with tracking off), nothing changes.
2. No champion yet: the candidate becomes ``champion``.
3. The champion *is* the candidate (same version, or a version whose weights file has the same
   content): nothing changes.
4. Otherwise the champion's own files are downloaded and re-evaluated on this run's test split
   (a stored score from another split would not be comparable). The candidate becomes
   ``champion`` only if its Dice is strictly higher; else it becomes ``challenger``.
5. If the champion cannot be evaluated on this split (e.g. it was trained for other channels
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


class RegistryLike(Protocol):  # ganseg.tracking.Registry; a protocol keeps mlflow out of tests' way
    def alias(self, name: str, alias: str) -> Any: ...

    def set_alias(self, name: str, alias: str, version: str) -> bool: ...

    def delete_alias(self, name: str, alias: str) -> bool: ...


@dataclass(frozen=True)
class Candidate:
    variant: str
    dice: float
    versions: tuple[Any, ...]  # registered versions holding this exact model file, newest first


@dataclass
class Decision:
    action: str  # promoted | kept | challenger | skipped
    reason: str
    model_name: str
    candidate_variant: str
    candidate_version: str | None
    candidate_dice: float
    champion_version_before: str | None = None
    champion_dice: float | None = None  # the previous champion, re-evaluated on this test split
    aliases_changed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        champion = (
            f"; champion v{self.champion_version_before} Dice {self.champion_dice:.4f}"
            if self.champion_dice is not None
            else ""
        )
        version = f" v{self.candidate_version}" if self.candidate_version else ""
        return (
            f"{self.action}: {self.candidate_variant}{version} Dice {self.candidate_dice:.4f}{champion} "
            f"({self.reason})"
        )


def decide_and_apply(
    registry: RegistryLike,
    model_name: str,
    candidate: Candidate,
    score_champion: Callable[[Any], float],
    champion_alias: str = "champion",
    challenger_alias: str = "challenger",
) -> Decision:
    """Apply the rules of the module docstring; ``score_champion(version)`` -> its test Dice."""
    decision = Decision(
        action="skipped",
        reason="",
        model_name=model_name,
        candidate_variant=candidate.variant,
        candidate_version=candidate.versions[0].version if candidate.versions else None,
        candidate_dice=float(candidate.dice),
    )
    if not candidate.versions:
        decision.reason = f"the {candidate.variant} model file is not a registered version of {model_name}"
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
        decision.champion_dice = float(score_champion(champion))
    except GansegError as exc:
        decision.action = "challenger"
        decision.reason = f"the champion cannot be evaluated on this test split: {exc}"
    else:
        if candidate.dice > decision.champion_dice:
            decision.action, decision.reason = "promoted", "higher test Dice than the champion on this split"
            _promote(registry, model_name, newest.version, champion_alias, challenger_alias, decision)
            return decision
        decision.action, decision.reason = "challenger", "test Dice not higher than the champion's on this split"
    if registry.set_alias(model_name, challenger_alias, newest.version):
        decision.aliases_changed.append(challenger_alias)
    return decision


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
