"""Evaluation: scores with bootstrap intervals, paired comparisons, synthetic-data quality,
registry promotion, overlap-tile inference, reports and multi-seed aggregation.

The stage layer (``pipelines/evaluate.py``, ``predict.py``, ``aggregate.py``) wires these
modules to files and params; nothing here reads params.yaml or imports mlflow.
"""
