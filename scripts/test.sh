#!/usr/bin/env bash
# The test command: set-up (idempotent), then every test the project has.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh"
CACHE=${LIVETALK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/livetalk}
VPY="$CACHE/venv/bin/python"

echo "== model checks (Python, against onnxruntime / CTranslate2)"
"$VPY" models/check_test_models.py --dir "$CACHE/models/test" >/dev/null
"$VPY" models/check_whisper.py --onnx "$CACHE/models/whisper-tiny.en/encoder.onnx"

echo "== meson build of the plugin"
[ -d build ] || meson setup build --buildtype=release >/dev/null
meson compile -C build
GST_PLUGIN_PATH="$ROOT/build" gst-inspect-1.0 livetalk >/dev/null \
  || { echo "gst-inspect-1.0 does not find the livetalk plugin"; exit 1; }

echo "== cargo test"
cargo test --release --workspace --all-targets
