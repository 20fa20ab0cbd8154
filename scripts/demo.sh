#!/usr/bin/env bash
# The demo: set-up if needed, then the main job end to end as far as the elements go today:
# a spoken sentence (espeak-ng) through whisperfeat, features written to an .npy file.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh"
cargo build --release -q -p livetalk
OUT=${1:-"$ROOT/demo-out"}
mkdir -p "$OUT"
espeak-ng -v en-us -w "$OUT/speech.wav" "Hello! I am a live avatar. My mouth follows the audio features of this sentence."
target/release/livetalk features "$OUT/speech.wav" --mel "$OUT/mel.npy" --features "$OUT/features.npy"
echo "demo: wrote $OUT/mel.npy and $OUT/features.npy"
