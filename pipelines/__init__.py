"""The stage layer: one module per DVC stage, each a typer command (``python -m pipelines``)."""
