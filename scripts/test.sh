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
CARGO_TARGET_DIR="$ROOT/target" meson compile -C build
GST_PLUGIN_PATH="$ROOT/build" gst-inspect-1.0 livetalk >/dev/null \
  || { echo "gst-inspect-1.0 does not find the livetalk plugin"; exit 1; }

echo "== cargo test"
LOG=$(mktemp)
# Tests that cannot run on this machine write a line here (support::skip): they are counted
# as skipped, not passed, in the closing line; so are tests cargo reports as ignored.
export LIVETALK_SKIP_LOG=$(mktemp)
trap 'rm -f "$LOG" "$LIVETALK_SKIP_LOG"' EXIT
set +e
cargo test --release --workspace --lib --bins --tests --no-fail-fast 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
if [ -s "$LIVETALK_SKIP_LOG" ]; then
  echo "== skipped (cannot run here)"
  sed 's/^/  /' "$LIVETALK_SKIP_LOG"
fi
# One closing line for the whole run (cargo's last line is that of its last test binary).
awk -v skipfile="$LIVETALK_SKIP_LOG" '
  /^test result:/ { for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
  END { while ((getline line < skipfile) > 0) { k++ }
        printf "all tests: %d passed, %d failed, %d skipped\n", p - k, f, s + k }' "$LOG"
exit "$status"
