#!/usr/bin/env bash
# The demo: set-up if needed (models, the Piper voice, the demo avatar), then a talking-avatar
# MP4 of a short sentence, rendered offline on the CPU with no downloaded weights.
# Prints the MP4's path. Usage: scripts/demo.sh [OUT_DIR] ["text to say"]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh"
cargo build --release -q -p livetalk
OUT=${1:-"$ROOT/demo-out"}
TEXT=${2:-"Hello! I am a live avatar made with GStreamer. My lips follow my voice, frame by frame."}
mkdir -p "$OUT"
target/release/livetalk render --text "$TEXT" -o "$OUT/demo.mp4" >/dev/null
echo "$OUT/demo.mp4"
