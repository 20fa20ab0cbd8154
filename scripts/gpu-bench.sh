#!/usr/bin/env bash
# MuseTalk on a GPU: the figures of the cross-session batching service, taken in one short run.
#
# What it measures (printed, and written to $OUT/gpu-bench.txt when OUT is set):
#   1. the peer: the same models in PyTorch eager (models/bench_torch.py), batch 1/4/8/16,
#      fp32 and fp16;
#   2. per precision (fp32, fp16): the models alone in ONNX Runtime (UNet + VAE decoder, as
#      the batching service runs them) at batch 1/4/8/16, then `livetalk bench sessions
#      --driver musetalk` for N live sessions at 25 fps, each on its own avatar, with and
#      without cross-session batching (on-time fps per session, mean batch, frames/s).
# The models are MuseTalk v1.5's full-width architectures with seeded random weights
# (models/export_musetalk.py --random-full), exported on the machine itself with its torch:
# the same FLOPs and memory as the official weights, meaningless pictures.
#
# The GPU machine this was written for has CUDA 13, PyTorch 2.11+cu130 with NVIDIA's Python
# packages (cuDNN 9, cuBLAS, cuFFT, ...), onnxruntime 1.30 *CPU only*, no GStreamer, no
# TensorRT, no diffusers and no network; what travels there is at most 64 MiB a call. So a
# bundle is made here and carried in parts:
#
#   Here (network; the project built in release):
#     scripts/gpu-bench.sh prepare [--part-mib 52]
#   writes .gpubench/ (git-ignored):
#     wheels/            diffusers and what the machine's image lacks of its needs (small)
#     p1/ p2/ ...        bundle.tar.xz split in parts of --part-mib MiB, one per folder:
#                        livetalk (the CLI, the plugin linked in), lib/ (the shared libraries
#                        it needs as ldd resolves them here, less the C library), gst/ (the
#                        GStreamer plugins the bench uses and gst-plugin-scanner), ort/ (ONNX
#                        Runtime 1.31.1 with its CUDA provider, from the onnxruntime-gpu wheel:
#                        the provider alone is 284 MB, about 185 MB compressed)
#   (ORT_GPU_WHEEL=path/to/onnxruntime_gpu-1.31.1-cp312-...whl: that wheel, not a download)
#
#   There, in consecutive calls while the machine stays warm, each carrying one part folder
#   (the first also carrying .gpubench/wheels):
#     call 1:  scripts/gpu-bench.sh receive .gpubench/p1 && scripts/gpu-bench.sh export
#              (export starts the model export in the background: it runs while the other
#              parts travel)
#     call k:  scripts/gpu-bench.sh receive .gpubench/pk
#     last:    scripts/gpu-bench.sh receive .gpubench/pN && scripts/gpu-bench.sh run
#   receive copies a part to /tmp/gpubench/parts; run joins and unpacks them once, waits for
#   the export, and takes the figures.
#
#   scripts/gpu-bench.sh run [--cpu] [--models DIR] [--batches 1,4,8,16]
#                            [--counts 1,4,8,12,16,24] [--seconds 5] [--max-batch 16]
#                            [--precisions fp32,fp16] [--no-torch]
#   Finds ONNX Runtime's CUDA provider (ORT_GPU_DIR, the unpacked bundle, or the folder of an
#   installed onnxruntime-gpu wheel), puts the lib folders of PyTorch's NVIDIA packages on
#   LD_LIBRARY_PATH (cuDNN 9, cuBLAS, cuFFT, the CUDA runtime: what that provider loads) and
#   runs the tables on device cuda. The bench refuses to report figures if the session fell
#   back to the CPU.
#
# Rehearsal without a GPU (what was run on the development machine):
#     scripts/gpu-bench.sh prepare
#     for p in .gpubench/p*; do scripts/gpu-bench.sh receive $p; done
#     scripts/gpu-bench.sh run --cpu --models ~/.cache/livetalk/models/test --no-torch
#   --cpu runs on device cpu with the unpacked bundle's binary and libraries (the provider
#   search is still done and reported) and small counts: CPU figures, and it says so.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="$ROOT/.gpubench"
WORK=/tmp/gpubench
ORT_VERSION=1.31.1
DIFFUSERS_VERSION=0.42.1

say() { printf '%s\n' "$*" >&2; }
die() { say "gpu-bench: $*"; exit 1; }

# Copies the libraries `ldd` resolves for $1 into $2, less the C library (the machine's is
# newer) and what is there already.
copy_libs() {
  ldd "$1" | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libgcc_s.so*|ld-linux*) ;;
      *) [ -e "$2/$(basename "$lib")" ] || cp -L "$lib" "$2/" ;;
    esac
  done
}

prepare() {
  local part_mib=52
  while [ $# -gt 0 ]; do
    case "$1" in
      --part-mib) part_mib="$2"; shift ;;
      *) die "unknown option $1" ;;
    esac
    shift
  done
  local bin="$ROOT/target/release/livetalk"
  [ -x "$bin" ] || die "$bin not found: cargo build --release -p livetalk"
  local pip="${PIP:-$HOME/.cache/livetalk/venv/bin/pip}"
  local stage
  stage="$(mktemp -d)"
  mkdir -p "$stage/lib" "$stage/gst" "$stage/ort"
  cp "$bin" "$stage/livetalk"
  copy_libs "$bin" "$stage/lib"
  local gstdir scanner
  gstdir="$(pkg-config --variable=pluginsdir gstreamer-1.0 2>/dev/null || echo /usr/lib/x86_64-linux-gnu/gstreamer-1.0)"
  for p in coreelements app; do cp -L "$gstdir/libgst$p.so" "$stage/gst/"; done
  scanner="$(pkg-config --variable=pluginscannerdir gstreamer-1.0 2>/dev/null || true)"
  [ -x "$scanner/gst-plugin-scanner" ] || scanner=/usr/lib/x86_64-linux-gnu/gstreamer1.0/gstreamer-1.0
  cp -L "$scanner/gst-plugin-scanner" "$stage/gst/"
  for so in "$stage"/gst/*; do copy_libs "$so" "$stage/lib"; done
  # ONNX Runtime with the CUDA provider, from the onnxruntime-gpu wheel (kept between runs).
  local wheel="${ORT_GPU_WHEEL:-}"
  if [ -z "$wheel" ]; then
    mkdir -p "$HOME/.cache/livetalk/wheels-gpu"
    wheel="$(ls "$HOME"/.cache/livetalk/wheels-gpu/onnxruntime_gpu-"$ORT_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    if [ -z "$wheel" ]; then
      "$pip" download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 \
        -d "$HOME/.cache/livetalk/wheels-gpu" "onnxruntime-gpu==$ORT_VERSION"
      wheel="$(ls "$HOME"/.cache/livetalk/wheels-gpu/onnxruntime_gpu-"$ORT_VERSION"-*.whl | head -n1)"
    fi
  fi
  unzip -q -j -o "$wheel" \
    "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" \
    'onnxruntime/capi/libonnxruntime_providers_cuda.so' \
    'onnxruntime/capi/libonnxruntime_providers_shared.so' -d "$stage/ort"
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/wheels"
  # diffusers and what the machine's image lacks of its requirements (Python 3.12 there).
  "$pip" download -q --no-deps --only-binary=:all: -d "$BUNDLE/wheels" \
    "diffusers==$DIFFUSERS_VERSION" importlib_metadata lazy-importer
  say "gpu-bench: compressing the bundle ..."
  tar -C "$stage" -cf - . | xz -6 -T0 | split -b "${part_mib}M" -a 1 --numeric-suffixes=1 - "$BUNDLE/bundle.tar.xz.part"
  rm -rf "$stage"
  local f n
  for f in "$BUNDLE"/bundle.tar.xz.part*; do
    n="${f##*.part}"
    mkdir -p "$BUNDLE/p$n"
    mv "$f" "$BUNDLE/p$n/"
  done
  du -sh "$BUNDLE"/* >&2
  say "gpu-bench: bundle ready in .gpubench: $(ls -d "$BUNDLE"/p* | wc -l) parts (see this script's header)"
}

# Keeps a carried part where the next calls find it.
receive() {
  local dir="${1:?receive: a part folder}"
  mkdir -p "$WORK/parts"
  cp "$dir"/bundle.tar.xz.part* "$WORK/parts/"
  ls -la "$WORK/parts" >&2
}

# Installs the carried wheels (diffusers) where python3 finds them.
install_wheels() {
  if ! python3 -c 'import diffusers' 2>/dev/null; then
    [ -d "$BUNDLE/wheels" ] || die "no diffusers here and no .gpubench/wheels carried"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target "$WORK/site" "$BUNDLE"/wheels/*.whl
  fi
}

# The model export, in the background (GPUBENCH_MODELS=--random-tiny: the small models, for a
# rehearsal) (setsid: it outlives the call that started it);
# `run` waits for $WORK/models/done.
export_models() {
  local models="$WORK/models"
  mkdir -p "$models"
  install_wheels
  say "gpu-bench: exporting the full-width models (fp32 and fp16) to $models in the background"
  setsid bash -c "
    export PYTHONPATH='$WORK/site'\${PYTHONPATH:+:\$PYTHONPATH}
    t0=\$SECONDS
    dev=\$(python3 -c 'import torch; print(\"cuda\" if torch.cuda.is_available() else \"cpu\")' 2>/dev/null || echo cpu)
    exp() { python3 '$ROOT/models/export_musetalk.py' \${GPUBENCH_MODELS:---random-full} --fp16 \
              --only unet,vae_decoder --device \$1 --out '$models'; }
    if { exp \$dev || { [ \$dev != cpu ] && echo 'tracing on cuda failed: on cpu' && exp cpu; }; } \
         >'$WORK/export.log' 2>&1; then
      echo \"exported in \$((SECONDS - t0)) s (traced on \$dev)\" >'$models/done'
    else
      echo failed >'$models/done'
    fi" </dev/null >/dev/null 2>&1 &
}

# The folder holding libonnxruntime_providers_cuda.so and its libonnxruntime, if any.
find_ort_gpu() {
  if [ -n "${ORT_GPU_DIR:-}" ] && [ -e "$ORT_GPU_DIR/libonnxruntime_providers_cuda.so" ]; then
    echo "$ORT_GPU_DIR"; return
  fi
  if [ -e "$WORK/bundle/ort/libonnxruntime_providers_cuda.so" ]; then
    echo "$WORK/bundle/ort"; return
  fi
  # An installed onnxruntime-gpu wheel.
  python3 - <<'EOF' 2>/dev/null || true
import importlib.util, os
spec = importlib.util.find_spec("onnxruntime")
if spec and spec.origin:
    capi = os.path.join(os.path.dirname(spec.origin), "capi")
    if os.path.exists(os.path.join(capi, "libonnxruntime_providers_cuda.so")):
        print(capi)
EOF
}

# The lib folders of PyTorch's NVIDIA packages (nvidia/*/lib, nvidia/*/*/lib), colon-separated.
find_nvidia_libs() {
  python3 - <<'EOF' 2>/dev/null || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
dirs = []
for base in list(getattr(nvidia, "__path__", [])):
    for pattern in ("*/lib", "*/*/lib"):
        dirs += sorted(d for d in glob.glob(os.path.join(base, pattern)) if os.path.isdir(d))
print(":".join(dirs))
EOF
}

run() {
  local cpu=0 models="" batches="1,4,8,16" counts="1,4,8,12,16,24" seconds=5 max_batch=16
  local precisions="fp32,fp16" torch=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --cpu) cpu=1; batches="1,2"; counts="1,2"; seconds=3; precisions=fp32 ;;
      --models) models="$2"; shift ;;
      --batches) batches="$2"; shift ;;
      --counts) counts="$2"; shift ;;
      --seconds) seconds="$2"; shift ;;
      --max-batch) max_batch="$2"; shift ;;
      --precisions) precisions="$2"; shift ;;
      --no-torch) torch=0 ;;
      *) die "unknown option $1" ;;
    esac
    shift
  done
  local out="${OUT:-$WORK/out}"
  mkdir -p "$out"
  local report="$out/gpu-bench.txt"
  : >"$report"
  log() { printf '%s\n' "$*" | tee -a "$report"; }

  # The bundle: joined and unpacked once.
  if [ ! -x "$WORK/bundle/livetalk" ]; then
    ls "$WORK"/parts/bundle.tar.xz.part* >/dev/null 2>&1 \
      || die "no bundle parts in $WORK/parts (scripts/gpu-bench.sh receive .gpubench/pN)"
    mkdir -p "$WORK/bundle"
    cat "$WORK"/parts/bundle.tar.xz.part* | xz -d | tar -C "$WORK/bundle" -xf -
    # The machine's own copy of a library (GLib, zlib, ...) is newer than this one and is
    # what its other programs (PyTorch's libraries) expect: keep only what it lacks.
    local f
    for f in "$WORK"/bundle/lib/*; do
      if ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$(basename "$f") "; then rm -f "$f"; fi
    done
  fi
  say "gpu-bench: bundled libraries used: $(ls "$WORK/bundle/lib" | tr '\n' ' ')"
  local system_ld="${LD_LIBRARY_PATH:-}"
  local bin="$WORK/bundle/livetalk"
  export LD_LIBRARY_PATH="$WORK/bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export GST_PLUGIN_SYSTEM_PATH="$WORK/bundle/gst"
  export GST_PLUGIN_SCANNER="$WORK/bundle/gst/gst-plugin-scanner"
  export GST_REGISTRY="$WORK/registry.bin"

  log "gpu-bench $(date -u +%FT%TZ)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
  else
    log "no nvidia-smi: no NVIDIA GPU here"
  fi
  local ort nv
  ort="$(find_ort_gpu)"
  nv="$(find_nvidia_libs)"
  log "ONNX Runtime CUDA provider: ${ort:-not found}"
  log "PyTorch's NVIDIA libraries: ${nv:-not found}"
  local device=cuda
  if [ "$cpu" = 1 ]; then
    device=cpu
    log "--cpu: device cpu; these are CPU figures, not GPU figures"
  else
    [ -n "$ort" ] || die "no ONNX Runtime CUDA provider (ORT_GPU_DIR, or the bundle: see the header)"
    [ -n "$nv" ] && export LD_LIBRARY_PATH="$nv:$LD_LIBRARY_PATH"
    export LD_LIBRARY_PATH="$ort:$LD_LIBRARY_PATH"
    export ORT_DYLIB_PATH
    ORT_DYLIB_PATH="$(ls "$ort"/libonnxruntime.so.* | head -n1)"
    log "ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
  fi

  # The models: the background export's, unless given.
  if [ -z "$models" ]; then
    models="$WORK/models"
    [ -e "$models/done" ] || [ -d "$models" ] || export_models
    local waited=0
    while [ ! -e "$models/done" ]; do
      [ "$waited" -lt 900 ] || die "the export did not end within 15 min (log: $WORK/export.log)"
      sleep 2; waited=$((waited + 2))
    done
    cp "$WORK/export.log" "$out/export.log" 2>/dev/null || true
    grep -q '^exported' "$models/done" || { tail -n 20 "$WORK/export.log" >&2; die "the export failed"; }
    log "models: $(cat "$models/done") (waited $waited s for it here)"
  fi

  set +e
  if [ "$torch" = 1 ]; then
    install_wheels
    local p
    for p in ${precisions//,/ }; do
      log ""
      LD_LIBRARY_PATH="$system_ld" PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}" timeout 300 python3 "$ROOT/models/bench_torch.py" \
        --device "$device" --precision "$p" --batches "$batches" --seconds 2 \
        ${GPUBENCH_MODELS:+$GPUBENCH_MODELS} 2>&1 \
        | grep -v 'should be kept in float32' | tee -a "$report"
    done
  fi
  local rc=0 p
  for p in ${precisions//,/ }; do
    log ""
    timeout 400 "$bin" bench sessions --driver musetalk --model-dir "$models" --device "$device" \
      --precision "$p" --batches "$batches" --counts "$counts" --seconds "$seconds" \
      --max-batch "$max_batch" 2>&1 | tee -a "$report"
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  done
  set -e
  log ""
  log "gpu-bench: done (rc $rc); report in $report"
  return "$rc"
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  receive) shift; receive "$@" ;;
  export) shift; export_models "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,58p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
