#!/usr/bin/env bash
# Headless real-audio-server run of `enhance --live` (used by tests/live.rs; runnable by hand).
#
# Starts a private PulseAudio daemon (no sound card needed) with:
#   mix    null sink, stereo, 48 kHz: its monitor is the common clock of the measurement
#   feed   mono sink  -> mix front-left   (paplay plays the noisy file here)
#   out    mono sink  -> mix front-right  (enhance plays here: default sink)
#   noisy  mono source <- mix.monitor front-left (enhance captures here: default source)
# ALSA's default PCM goes to this daemon through a temporary ~/.asoundrc (libasound2-plugins),
# which is what cpal opens. While enhance runs, parec records mix.monitor, so the monitor's left
# channel is what was fed and its right channel is what enhance played, on one clock.
#
# Usage: run_pulse.sh --enhance BIN --model MODEL --noisy WAV --out DIR [--duration S]
#                     [--kill-server-after S | --interrupt-after S] [-- extra enhance options]
# Writes DIR/{record-in.wav,record-out.wav,monitor.wav,enhance.log,report.json,exit_code,pulse.log,
# pactl.txt (the server's streams and their latencies, 4 s into the run)}.
# Exit status: 0 when the run happened (whatever enhance's exit code, see DIR/exit_code);
# non-zero when the audio server could not be set up. Every process it starts is stopped on exit.
set -euo pipefail

ENHANCE="" MODEL="" NOISY="" OUT="" DURATION=8 KILL_AFTER="" INT_AFTER=""
while (($#)); do
  case "$1" in
    --enhance) ENHANCE="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --noisy) NOISY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --kill-server-after) KILL_AFTER="$2"; shift 2 ;;
    --interrupt-after) INT_AFTER="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "run_pulse.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$ENHANCE" && -f "$MODEL" && -f "$NOISY" && -n "$OUT" ]] || {
  echo "run_pulse.sh: need --enhance BIN --model MODEL --noisy WAV --out DIR" >&2; exit 2; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# What the audio path needs (Debian packages), installed once.
need=()
command -v pulseaudio >/dev/null 2>&1 || need+=(pulseaudio)
command -v pactl >/dev/null 2>&1 || need+=(pulseaudio-utils)
[ -e /usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so ] \
  || ls /usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so >/dev/null 2>&1 || need+=(libasound2-plugins)
if ((${#need[@]})); then
  echo "run_pulse.sh: installing ${need[*]} (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

T="$(mktemp -d /tmp/thunder-pulse.XXXXXX)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -f "$T/pulse.log" ] && cp -f "$T/pulse.log" "$OUT/pulse.log" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT INT TERM

# A private environment: the daemon and every client find each other through it, and nothing
# of the caller's (or a desktop's) audio setup is touched.
export HOME="$T" XDG_RUNTIME_DIR="$T/run" PULSE_RUNTIME_PATH="$T/run/pulse"
export PULSE_SERVER="unix:$T/run/pulse/native"
mkdir -p "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
printf 'pcm.!default { type pulse }\nctl.!default { type pulse }\n' >"$T/.asoundrc"
cat >"$T/default.pa" <<'EOF'
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=mix channels=2 rate=48000 sink_properties=device.description=thunder-mix
load-module module-remap-sink sink_name=feed master=mix channels=1 master_channel_map=front-left channel_map=mono remix=no
load-module module-remap-sink sink_name=out master=mix channels=1 master_channel_map=front-right channel_map=mono remix=no
load-module module-remap-source source_name=noisy master=mix.monitor channels=1 master_channel_map=front-left channel_map=mono remix=no
set-default-sink out
set-default-source noisy
EOF

# As root, PulseAudio runs fine as a per-"user" daemon (it warns); --system would need the
# pulse user and D-Bus. -n: no default script; --exit-idle-time=-1: stays up while idle.
pulseaudio -n -F "$T/default.pa" --daemonize=no --exit-idle-time=-1 --realtime=false \
  --high-priority=false --disable-shm=false --log-target=file:"$T/pulse.log" --log-level=info &
PULSE=$!
PIDS+=("$PULSE")
for _ in $(seq 100); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
pactl info >/dev/null 2>&1 || { echo "run_pulse.sh: PulseAudio did not start" >&2; cat "$T/pulse.log" >&2 || true; exit 1; }

parec -d mix.monitor --rate=48000 --channels=2 --format=s16le --file-format=wav "$OUT/monitor.wav" &
PIDS+=($!)
sleep 0.3

rm -f "$OUT/record-in.wav" "$OUT/record-out.wav" "$OUT/report.json" "$OUT/exit_code"
"$ENHANCE" --live --model "$MODEL" --duration "$DURATION" \
  --record-input "$OUT/record-in.wav" --record-output "$OUT/record-out.wav" \
  --report-json "$OUT/report.json" "$@" >"$OUT/enhance.log" 2>&1 &
ENH=$!
PIDS+=("$ENH")
# Feed the noisy file once the streams are open.
for _ in $(seq 100); do grep -q "^live: latency" "$OUT/enhance.log" 2>/dev/null && break; sleep 0.1; done
paplay -d feed "$NOISY" &
PIDS+=($!)
# The server's own view of its buffering, mid-run (for diagnosing latency differences).
( sleep 4; { pactl list sink-inputs; pactl list source-outputs; pactl list sinks; pactl list sources; } \
    >"$OUT/pactl.txt" 2>&1 || true ) &
PIDS+=($!)
if [ -n "$KILL_AFTER" ]; then
  sleep "$KILL_AFTER"
  kill "$PULSE" 2>/dev/null || true   # the audio server goes away under enhance
fi
if [ -n "$INT_AFTER" ]; then
  sleep "$INT_AFTER"
  kill -INT "$ENH" 2>/dev/null || true  # as Ctrl-C
fi
code=0
# enhance stops by itself after --duration; the bound here only guards against a hang.
for _ in $(seq $(( (${DURATION%.*} + 30) * 10 ))); do kill -0 "$ENH" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$ENH" 2>/dev/null; then
  echo "run_pulse.sh: enhance did not stop; sending SIGINT" >&2
  kill -INT "$ENH" 2>/dev/null || true
  sleep 3
fi
wait "$ENH" || code=$?
echo "$code" >"$OUT/exit_code"
sleep 0.3 # let parec capture the tail
exit 0
