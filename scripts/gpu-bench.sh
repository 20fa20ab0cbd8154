#!/usr/bin/env bash
# MuseTalk on a GPU: the figures of the cross-session batching service, taken in one short run.
#
# What it measures (one table each, printed and written to $OUT/gpu-bench.txt if OUT is set):
#   1. the models alone (UNet + VAE decoder, as the batching service runs them) at batch
#      sizes 1/4/8/16: ms per batch and frames/s;
#   2. `livetalk bench sessions --driver musetalk` for 1..16 live sessions at 25 fps, each on
#      its own avatar, with and without cross-session batching (on-time fps per session,
#      mean batch, aggregate frames/s).
# The models are MuseTalk v1.5's full-width architectures with seeded random weights
# (models/export_musetalk.py --random-full), exported on the machine itself with its torch:
# the same FLOPs and memory as the official weights, meaningless pictures.
#
# The GPU machine this was prepared for has CUDA 13, PyTorch 2.11+cu130 with NVIDIA's Python
# packages (nvidia-cudnn-cu13, nvidia-cublas, nvidia-cufft, ...), onnxruntime 1.30 *CPU only*,
# no GStreamer, no TensorRT, no diffusers and no network; what travels there is at most
# 64 MiB a call. So the bundle is made here and carried:
#
#   Here (network, the project built in release):
#     scripts/gpu-bench.sh prepare [BUNDLE]        (default BUNDLE: .gpubench, git-ignored)
#   (ORT_GPU_WHEEL=path/to/onnxruntime_gpu-1.31.1-cp312-...whl: use that wheel instead of
#   downloading it)
#   writes into BUNDLE:
#     livetalk                 the CLI (the plugin is linked in)
#     lib/                     the shared libraries it needs that the machine may lack
#                              (GStreamer, GLib, ORC, ... as ldd resolves them here)
#     gst/                     the GStreamer plugins the bench uses (coreelements, app) and
#                              gst-plugin-scanner
#     wheels/                  diffusers and what it needs beyond the machine's packages
#     ort-gpu.tar.xz.part*     ONNX Runtime 1.31.1 with its CUDA provider, from the PyPI
#                              wheel onnxruntime-gpu (libonnxruntime.so.1.31.1,
#                              libonnxruntime_providers_cuda.so, _shared.so), xz'd and split
#                              into parts under 60 MB
#   The CUDA provider alone is 284 MB (about 190 MB xz'd), over one call's 64 MiB: carry the parts
#   in separate calls while the machine stays warm, each call moving its part out of the
#   working tree (e.g. `mkdir -p /tmp/gpubench && mv .gpubench/ort-gpu.tar.xz.partaa
#   /tmp/gpubench/`), and carry the rest (livetalk, lib, gst, wheels: about 45 MB) with the
#   last call, which runs:
#     ORT_PARTS=/tmp/gpubench scripts/gpu-bench.sh run
#   If the machine has the onnxruntime-gpu wheel installed, no parts are needed: the script
#   finds its capi/ folder by itself.
#
# On the GPU machine:
#     scripts/gpu-bench.sh run [--cpu] [--models DIR] [--batches 1,4,8,16]
#                              [--counts 1,2,4,8,12,16] [--seconds 5] [--max-batch 16]
#   Finds ONNX Runtime's CUDA provider (ORT_GPU_DIR, the reassembled parts, or the folder of
#   an installed onnxruntime-gpu wheel), puts the lib folders of PyTorch's NVIDIA packages
#   on LD_LIBRARY_PATH (cuDNN 9, cuBLAS, cuFFT, the CUDA runtime: what that provider loads),
#   installs the carried wheels under /tmp, exports the models (unless DIR already holds
#   them), and runs the two tables on device cuda.
#
# Rehearsal without a GPU (what was run on the development machine):
#     scripts/gpu-bench.sh prepare
#     scripts/gpu-bench.sh run --cpu --models ~/.cache/livetalk/models/musetalk-random-full \
#         --batches 1,2 --counts 1,2 --seconds 3
#   --cpu runs on device cpu with the set-up's ONNX Runtime (the provider search is still
#   done and reported) and small counts: the figures are CPU figures, and say so.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE_DEFAULT="$ROOT/.gpubench"
ORT_VERSION=1.31.1
DIFFUSERS_VERSION=0.42.1

say() { printf '%s\n' "$*" >&2; }
die() { say "gpu-bench: $*"; exit 1; }

prepare() {
  local bundle="${1:-$BUNDLE_DEFAULT}"
  local bin="$ROOT/target/release/livetalk"
  [ -x "$bin" ] || die "$bin not found: cargo build --release -p livetalk"
  mkdir -p "$bundle/lib" "$bundle/gst" "$bundle/wheels"
  cp "$bin" "$bundle/livetalk"
  # The libraries ldd resolves, but not the C library itself (the machine's is newer).
  ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libgcc_s.so*|ld-linux*) ;;
      *) cp -L "$lib" "$bundle/lib/" ;;
    esac
  done
  local gstdir
  gstdir="$(pkg-config --variable=pluginsdir gstreamer-1.0 2>/dev/null || echo /usr/lib/x86_64-linux-gnu/gstreamer-1.0)"
  for p in coreelements app; do cp -L "$gstdir/libgst$p.so" "$bundle/gst/"; done
  local scanner
  scanner="$(pkg-config --variable=pluginscannerdir gstreamer-1.0 2>/dev/null || true)"
  [ -x "$scanner/gst-plugin-scanner" ] || scanner=/usr/lib/x86_64-linux-gnu/gstreamer1.0/gstreamer-1.0
  cp -L "$scanner/gst-plugin-scanner" "$bundle/gst/"
  # The plugins' own dependencies.
  for so in "$bundle"/gst/*.so "$bundle/gst/gst-plugin-scanner"; do
    ldd "$so" | awk '/=> \//{print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libgcc_s.so*|ld-linux*) ;;
        *) [ -e "$bundle/lib/$(basename "$lib")" ] || cp -L "$lib" "$bundle/lib/" ;;
      esac
    done
  done
  # diffusers and what the machine's image lacks of its requirements (Python 3.12 there).
  local pip="${PIP:-$HOME/.cache/livetalk/venv/bin/pip}"
  "$pip" download -q --no-deps --only-binary=:all: -d "$bundle/wheels" \
    "diffusers==$DIFFUSERS_VERSION" importlib_metadata lazy-importer
  # ONNX Runtime with the CUDA provider, from the onnxruntime-gpu wheel.
  if ! ls "$bundle"/ort-gpu.tar.xz.part* >/dev/null 2>&1; then
    local tmp
    tmp="$(mktemp -d)"
    if [ -n "${ORT_GPU_WHEEL:-}" ]; then
      cp "$ORT_GPU_WHEEL" "$tmp/"
    else
      "$pip" download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 -d "$tmp" \
        "onnxruntime-gpu==$ORT_VERSION"
    fi
    (cd "$tmp" && unzip -q -j onnxruntime_gpu-*.whl \
      "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" \
      'onnxruntime/capi/libonnxruntime_providers_cuda.so' \
      'onnxruntime/capi/libonnxruntime_providers_shared.so' -d ort \
      && tar -C ort -cf - . | xz -3 -T0 | split -b 60M - "$bundle/ort-gpu.tar.xz.part")
    rm -rf "$tmp"
  fi
  du -sh "$bundle"/* >&2
  say "gpu-bench: bundle ready in $bundle (see this script's header for how to carry it)"
}

# The folder holding libonnxruntime_providers_cuda.so and its libonnxruntime, if any.
find_ort_gpu() {
  local bundle="$1"
  if [ -n "${ORT_GPU_DIR:-}" ] && [ -e "$ORT_GPU_DIR/libonnxruntime_providers_cuda.so" ]; then
    echo "$ORT_GPU_DIR"; return
  fi
  local parts="${ORT_PARTS:-$bundle}"
  if ls "$parts"/ort-gpu.tar.xz.part* >/dev/null 2>&1; then
    local dir=/tmp/gpubench-ort
    if [ ! -e "$dir/libonnxruntime_providers_cuda.so" ]; then
      mkdir -p "$dir"
      cat "$parts"/ort-gpu.tar.xz.part* | xz -d | tar -C "$dir" -xf -
    fi
    echo "$dir"; return
  fi
  # An installed onnxruntime-gpu wheel.
  local py
  for py in python3 "$HOME/.cache/livetalk/venv/bin/python"; do
    command -v "$py" >/dev/null 2>&1 || continue
    local capi
    capi="$("$py" - <<'EOF' 2>/dev/null || true
import importlib.util, os
spec = importlib.util.find_spec("onnxruntime")
if spec and spec.origin:
    capi = os.path.join(os.path.dirname(spec.origin), "capi")
    if os.path.exists(os.path.join(capi, "libonnxruntime_providers_cuda.so")):
        print(capi)
EOF
)"
    if [ -n "$capi" ]; then echo "$capi"; return; fi
  done
}

# The lib folders of PyTorch's NVIDIA packages (nvidia/*/lib), colon-separated.
find_nvidia_libs() {
  python3 - <<'EOF' 2>/dev/null || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
dirs = []
for base in list(getattr(nvidia, "__path__", [])):
    dirs += sorted(d for d in glob.glob(os.path.join(base, "*", "lib")) if os.path.isdir(d))
    # CUDA 13 packages keep some libraries one level deeper (nvidia/cu13/lib).
    dirs += sorted(d for d in glob.glob(os.path.join(base, "*", "*", "lib")) if os.path.isdir(d))
print(":".join(dirs))
EOF
}

run() {
  local cpu=0 models="" batches="1,4,8,16" counts="1,2,4,8,12,16" seconds=5 max_batch=16
  local bundle="$BUNDLE_DEFAULT"
  while [ $# -gt 0 ]; do
    case "$1" in
      --cpu) cpu=1; batches="1,2"; counts="1,2"; seconds=3 ;;
      --models) models="$2"; shift ;;
      --batches) batches="$2"; shift ;;
      --counts) counts="$2"; shift ;;
      --seconds) seconds="$2"; shift ;;
      --max-batch) max_batch="$2"; shift ;;
      --bundle) bundle="$2"; shift ;;
      *) die "unknown option $1" ;;
    esac
    shift
  done
  local out="${OUT:-/tmp/gpu-bench-out}"
  mkdir -p "$out"
  local report="$out/gpu-bench.txt"
  : >"$report"
  log() { printf '%s\n' "$*" | tee -a "$report"; }

  local bin="$bundle/livetalk"
  [ -x "$bin" ] || bin="$ROOT/target/release/livetalk"
  [ -x "$bin" ] || die "no livetalk binary: run 'scripts/gpu-bench.sh prepare' here and carry the bundle"

  # GStreamer and GLib from the bundle where the machine has none.
  if [ -d "$bundle/lib" ]; then
    export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export GST_PLUGIN_SYSTEM_PATH="$bundle/gst"
    export GST_PLUGIN_SCANNER="$bundle/gst/gst-plugin-scanner"
    export GST_REGISTRY="/tmp/gpubench-registry-$$.bin"
  fi

  log "gpu-bench $(date -u +%FT%TZ) on $(hostname)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
  else
    log "no nvidia-smi: no NVIDIA GPU here"
  fi

  local ort nv
  ort="$(find_ort_gpu "$bundle")"
  nv="$(find_nvidia_libs)"
  log "ONNX Runtime CUDA provider: ${ort:-not found}"
  log "PyTorch's NVIDIA libraries: ${nv:-not found}"
  local device=cuda
  if [ "$cpu" = 1 ]; then
    device=cpu
    log "--cpu: device cpu, the set-up's ONNX Runtime; these are CPU figures, not GPU figures"
  else
    [ -n "$ort" ] || die "no ONNX Runtime CUDA provider (set ORT_GPU_DIR, or carry the parts: see the header)"
    [ -n "$nv" ] && export LD_LIBRARY_PATH="$nv:$LD_LIBRARY_PATH"
    export LD_LIBRARY_PATH="$ort:$LD_LIBRARY_PATH"
    export ORT_DYLIB_PATH
    ORT_DYLIB_PATH="$(ls "$ort"/libonnxruntime.so.* | head -n1)"
    log "ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
  fi

  # The models: exported here unless given.
  if [ -z "$models" ]; then
    models=/tmp/gpubench-models/musetalk-random-full
  fi
  if [ ! -e "$models/unet.onnx" ]; then
    if [ -d "$bundle/wheels" ] && ! python3 -c 'import diffusers' 2>/dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/gpubench-site "$bundle"/wheels/*.whl
      export PYTHONPATH="/tmp/gpubench-site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    log "exporting the full-width random-weight models to $models ..."
    local t0=$SECONDS
    python3 "$ROOT/models/export_musetalk.py" --random-full --out "$models" >"$out/export.log" 2>&1 \
      || { tail -n 20 "$out/export.log" >&2; die "export failed (log in $out/export.log)"; }
    log "exported in $((SECONDS - t0)) s"
  fi

  log ""
  set +e
  "$bin" bench sessions --driver musetalk --model-dir "$models" --device "$device" \
    --batches "$batches" --counts "$counts" --seconds "$seconds" --max-batch "$max_batch" \
    2>&1 | tee -a "$report"
  local rc=${PIPESTATUS[0]}
  set -e
  log ""
  log "gpu-bench: done (rc $rc); report in $report"
  return "$rc"
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,60p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
