#!/usr/bin/env bash
# Retrain and compare: what CI runs on a change to params, pipeline or code, and what you can
# run locally to see the same thing.
#
#   scripts/retrain.sh [BASE_REF]
#
# 1. `dvc repro` the pipeline (grouped in MLflow as pipeline run "ci-<commit>");
# 2. `dvc metrics diff BASE_REF` and `dvc params diff BASE_REF` as markdown, written to
#    reports/ci_summary.md and, on GitHub Actions, appended to the job summary.
# BASE_REF defaults to origin/main when it exists, else HEAD (diff against the last commit).
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true GX_ANALYTICS_ENABLED=False DO_NOT_TRACK=true

base="${1:-}"
if [ -z "$base" ]; then
  if git rev-parse --verify -q origin/main >/dev/null; then base=origin/main; else base=HEAD; fi
fi
commit=$(git rev-parse --short HEAD 2>/dev/null || echo local)
export GANSEG_PIPELINE_RUN="${GANSEG_PIPELINE_RUN:-ci-$commit}"

# Inside an activated environment (CI's cached one, a test's) use it; otherwise set up .venv.
if [ -z "${VIRTUAL_ENV:-}" ]; then
  ./dev setup
  export PATH="$PWD/.venv/bin:$PATH"
fi

start=$(date +%s)
dvc repro
elapsed=$(( $(date +%s) - start ))

mkdir -p reports
summary=reports/ci_summary.md
{
  echo "## ganseg retrain ($commit vs $base)"
  echo
  echo "\`dvc repro\` took ${elapsed}s; MLflow pipeline run \`$GANSEG_PIPELINE_RUN\`."
  echo
  echo "### Metrics"
  dvc metrics diff "$base" --md --all 2>/dev/null || echo "(no metrics at $base to compare with)"
  echo
  echo "### Params"
  dvc params diff "$base" --md 2>/dev/null || echo "(no params at $base to compare with)"
} > "$summary"
cat "$summary"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  cat "$summary" >> "$GITHUB_STEP_SUMMARY"
fi
