#!/usr/bin/env bash
# The demo: set-up if needed (models, the demo avatar), then a talking-avatar MP4 of a short
# sentence, rendered offline on the CPU with no downloaded weights. Prints the MP4's path.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh"
cargo build --release -q -p livetalk
OUT=${1:-"$ROOT/demo-out"}
mkdir -p "$OUT"
TEXT="Hello! I am a live avatar made with GStreamer. My lips follow my voice, frame by frame."
if target/release/livetalk render --help | grep -q -- --text && gst-inspect-1.0 >/dev/null 2>&1 \
   && GST_PLUGIN_PATH="$ROOT/target/release" gst-inspect-1.0 piperttssrc >/dev/null 2>&1; then
  target/release/livetalk render --text "$TEXT" -o "$OUT/demo.mp4" >/dev/null
else
  espeak-ng -v en-us -w "$OUT/speech.wav" "$TEXT"
  target/release/livetalk render --audio "$OUT/speech.wav" -o "$OUT/demo.mp4" >/dev/null
fi
echo "$OUT/demo.mp4"
