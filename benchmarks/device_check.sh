#!/usr/bin/env bash
# Device check for a machine with an accelerator (GPU or TPU), in under 8 minutes on one
# modern GPU: memory bandwidth and closed-form gradient-angle throughput against it, a
# 1e8-configuration streaming sweep, the vmapped-seeds training throughput against
# sequential runs, and (with COLLAPSE_BUDGET=seconds) `geotrip collapse --preset full` under
# that budget. Writes one JSON with provenance (default benchmarks/results/device_check.json).
# On a machine where JAX sees only the CPU it prints why and exits with status 3.
#
#   bash benchmarks/device_check.sh [OUT.json] [extra options of geotrip.benchmarks._device]
#   COLLAPSE_BUDGET=180 bash benchmarks/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
OUT="${1:-benchmarks/results/device_check.json}"
shift || true
exec "$PY" -m geotrip.benchmarks._device --out "$OUT" \
  --collapse-budget "${COLLAPSE_BUDGET:-0}" "$@"
