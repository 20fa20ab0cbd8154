#!/usr/bin/env bash
# Text -> talking-avatar MP4 (H.264 + AAC), offline. OUT=out.mp4 by default.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT=${OUT:-out.mp4}
eval exec gst-launch-1.0 "$@" "$(avatar_pipeline false) ! x264enc speed-preset=veryfast bframes=0 ! \
  h264parse ! queue ! mux. \
  a.audio ! queue ! audioconvert ! audioresample ! audio/x-raw,rate=48000 ! avenc_aac ! aacparse ! queue ! mux. \
  mp4mux name=mux ! filesink location=\"$OUT\""
