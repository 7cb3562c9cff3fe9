"""The evaluate stage's headline metrics in report order, their labels and directions.

A view of :data:`ganseg.metrics.registry.REGISTRY` (its ``overlap`` and ``boundary``
entries), for the report and aggregate tables: add a metric there, not here.
"""

from ganseg.metrics.registry import segmentation_metrics

METRICS = tuple(spec.name for spec in segmentation_metrics())
LOWER_IS_BETTER = frozenset(spec.name for spec in segmentation_metrics() if not spec.higher_is_better)
LABELS = {spec.name: spec.label for spec in segmentation_metrics()}
