"""Data validation of the prepare manifest with great-expectations.

One expectation suite runs on the manifest DataFrame (one row per pair). Critical
expectations stop the stage; warnings are reported and the stage goes on. The result is
saved as JSON and rendered as GX Data Docs HTML under ``reports/prepare/``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from ganseg.config.prepare import ValidationConfig

# Rows that a failed expectation is about are named by these columns in the summary.
NAME_COLUMNS = ("image_path", "mask_path", "pair_id")


@dataclass
class Finding:
    expectation: str
    column: str
    severity: str  # "critical" | "warning"
    files: list[str] = field(default_factory=list)
    count: int = 0

    def line(self) -> str:
        shown = ", ".join(self.files[:3])
        more = f" and {self.count - 3} more" if self.count > 3 else ""
        return f"{self.expectation} on '{self.column}' failed for {shown}{more}"


@dataclass
class ValidationReport:
    success: bool
    findings: list[Finding]
    result: dict

    @property
    def critical(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "critical"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


def _suite(gx, cfg: ValidationConfig, binary: bool, num_classes: int):
    e = gx.expectations
    warning = {"severity": "warning"}
    allowed_labels = [0, 1] if binary else list(range(num_classes))
    expectations = [
        e.ExpectColumnValuesToBeUnique(column="pair_id"),
        e.ExpectColumnValuesToNotBeNull(column="image_path", meta={"why": "every mask has an image"}),
        e.ExpectColumnValuesToNotBeNull(column="mask_path", meta={"why": "every image has a mask"}),
        e.ExpectColumnValuesToBeNull(column="read_error", meta={"why": "every file decodes"}),
        e.ExpectColumnPairValuesToBeEqual(column_A="image_height", column_B="mask_height"),
        e.ExpectColumnPairValuesToBeEqual(column_A="image_width", column_B="mask_width"),
        e.ExpectColumnValuesToBeBetween(column="image_height", min_value=cfg.min_side),
        e.ExpectColumnValuesToBeBetween(column="image_width", min_value=cfg.min_side),
        e.ExpectColumnValuesToBeBetween(column="mask_min_label", min_value=min(allowed_labels)),
        e.ExpectColumnValuesToBeBetween(column="mask_max_label", max_value=max(allowed_labels)),
        e.ExpectColumnValuesToBeBetween(
            column="foreground_fraction", min_value=cfg.foreground_min, max_value=cfg.foreground_max
        ),
        e.ExpectColumnValuesToBeInSet(column="splits_sharing_content", value_set=[1]),
    ]
    if cfg.warn_empty_masks:
        expectations.append(
            e.ExpectColumnValuesToBeBetween(
                column="foreground_fraction", min_value=1e-9, severity="warning", meta=warning
            )
        )
    suite = gx.ExpectationSuite(name="ganseg_prepare")
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


def validate_manifest(
    manifest: pd.DataFrame, cfg: ValidationConfig, num_classes: int, docs_dir: Path | None = None
) -> ValidationReport:
    """Run the suite on ``manifest``; render Data Docs into ``docs_dir`` when given."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    site_root = Path(tempfile.mkdtemp(prefix="ganseg-gx-"))
    try:
        context.add_data_docs_site(
            site_name="ganseg",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_root)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        batch = (
            context.data_sources.add_pandas("ganseg")
            .add_dataframe_asset("manifest")
            .add_batch_definition_whole_dataframe("all_pairs")
        )
        suite = context.suites.add(_suite(gx, cfg, num_classes == 1, num_classes))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="prepare_manifest", data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="prepare",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["ganseg"])],
                result_format={"result_format": "COMPLETE"},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": manifest})
        result = next(iter(run.run_results.values()))
        if docs_dir is not None:
            shutil.copytree(site_root, docs_dir, dirs_exist_ok=True)
    finally:
        shutil.rmtree(site_root, ignore_errors=True)

    result_dict = json.loads(json.dumps(result.to_json_dict(), default=str))
    findings = []
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        kwargs = config.kwargs
        column = kwargs.get("column") or f"{kwargs.get('column_A')} = {kwargs.get('column_B')}"
        indexes = item.result.get("unexpected_index_list") or []
        files = [_row_name(manifest, index, column) for index in indexes]
        severity = "warning" if str(getattr(config, "severity", "")).lower().endswith("warning") else "critical"
        count = item.result.get("unexpected_count") or len(files) or 1
        findings.append(Finding(config.type, column, severity, files, int(count)))
    success = not any(f.severity == "critical" for f in findings)
    return ValidationReport(success=success, findings=findings, result=result_dict)


def _row_name(manifest: pd.DataFrame, index, failed_column: str) -> str:
    """How a failing row is named: the failed column's own text when it has some (a read error
    already names the file and says why), else the row's first file name."""
    if isinstance(index, dict):  # GX may report {column: value, ...} instead of a label
        index = index.get("index", next(iter(index.values())))
    row = manifest.loc[index] if index in manifest.index else None
    if row is None:
        return str(index)
    for column in (failed_column, *NAME_COLUMNS):
        value = row.get(column)
        if isinstance(value, str) and value:
            return value
    return str(index)
