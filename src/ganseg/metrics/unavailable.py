"""A metric that could not be computed here, and why: never a different quantity under its name."""

from __future__ import annotations

from ganseg.errors import GansegError


class MetricUnavailable(GansegError):
    """Raised when a metric cannot be computed in this environment (missing weights, too few images).

    ``reason`` is one line that says what is missing and how to enable the metric. The evaluate
    stage records it with :meth:`as_record` instead of a number, so a report never shows a
    value that is not the metric it names.
    """

    def __init__(self, metric: str, reason: str) -> None:
        super().__init__(f"{metric} not computed: {reason}")
        self.metric = metric
        self.reason = reason

    def as_record(self) -> dict[str, object]:
        """``{"value": None, "reason": ...}``: the JSON form for metrics files."""
        return {"value": None, "reason": self.reason}
