#!/usr/bin/env bash
# The whole test suite: provisions what it needs (scripts/setup.sh), then the Rust tests and the
# Python recipe's tests. This is the command README.md and .ci/run use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.cache/ort/libonnxruntime.so}"
echo "== Rust tests"
cargo test --release --all-targets
cargo test --release --doc
echo "== Python recipe tests (models/train)"
(cd models/train && OMP_NUM_THREADS=2 ../../.venv/bin/python -m pytest -q -p no:cacheprovider)
