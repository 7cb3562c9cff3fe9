import numpy as np
import pandas as pd

from ganseg.config.prepare import ValidationConfig
from ganseg.data.validation import validate_manifest


def _good(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pair_id": [f"p{i}" for i in range(n)],
            "image_path": [f"images/p{i}.png" for i in range(n)],
            "mask_path": [f"masks/p{i}.png" for i in range(n)],
            "read_error": [None] * n,
            "image_height": [64] * n,
            "image_width": [64] * n,
            "mask_height": [64] * n,
            "mask_width": [64] * n,
            "mask_min_label": [0] * n,
            "mask_max_label": [1] * n,
            "foreground_fraction": np.linspace(0.1, 0.3, n),
            "splits_sharing_content": [1] * n,
        }
    )


def test_clean_manifest_passes_and_renders_docs(tmp_path):
    report = validate_manifest(_good(), ValidationConfig(), num_classes=1, docs_dir=tmp_path)
    assert report.success and not report.findings
    assert (tmp_path / "index.html").exists()
    assert report.result["success"] is True


def test_each_critical_problem_is_found_and_names_the_file():
    manifest = _good(8)
    manifest.loc[1, "mask_path"] = None  # image without mask
    manifest.loc[2, "image_height"] = 50  # size mismatch
    manifest.loc[3, "pair_id"] = "p4"  # duplicate id
    manifest.loc[5, "mask_max_label"] = 3  # non-binary after binarisation
    manifest.loc[6, "splits_sharing_content"] = 2  # same content in two splits
    manifest.loc[7, "read_error"] = "images/p7.png: not a readable image"
    report = validate_manifest(manifest, ValidationConfig(), num_classes=1)
    assert not report.success
    failed = {(f.expectation, f.column) for f in report.critical}
    assert ("expect_column_values_to_not_be_null", "mask_path") in failed
    assert ("expect_column_pair_values_to_be_equal", "image_height = mask_height") in failed
    assert ("expect_column_values_to_be_unique", "pair_id") in failed
    assert ("expect_column_values_to_be_between", "mask_max_label") in failed
    assert ("expect_column_values_to_be_in_set", "splits_sharing_content") in failed
    assert ("expect_column_values_to_be_null", "read_error") in failed
    size = next(f for f in report.critical if f.column == "image_height = mask_height")
    assert size.files == ["images/p2.png"]


def test_soft_expectation_only_warns():
    manifest = _good()
    manifest.loc[0, "foreground_fraction"] = 0.0
    report = validate_manifest(manifest, ValidationConfig(), num_classes=1)
    assert report.success
    assert [f.column for f in report.warnings] == ["foreground_fraction"]
    strict = validate_manifest(manifest, ValidationConfig(foreground_min=0.05), num_classes=1)
    assert not strict.success
