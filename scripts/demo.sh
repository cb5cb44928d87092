#!/usr/bin/env bash
# Quick start: provision, build, and enhance the bundled noisy example at --steps 1.
#   bash scripts/demo.sh [extra enhance options]
# Output: target/demo/enhanced_speech.wav
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
cargo build --release --quiet --bin enhance
mkdir -p target/demo
./target/release/enhance examples/audio/noisy_speech.wav target/demo/enhanced_speech.wav --steps 1 "$@"
echo "demo: wrote target/demo/enhanced_speech.wav (input: examples/audio/noisy_speech.wav)"
