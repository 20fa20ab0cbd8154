#!/usr/bin/env bash
# Live talking avatar pushed to an RTMP server (e.g. nginx-rtmp, YouTube/Twitch ingest).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RTMP_URL=${RTMP_URL:?set RTMP_URL, e.g. rtmp://127.0.0.1/live/avatar}
eval exec gst-launch-1.0 "$@" "$(avatar_pipeline true) ! \
  x264enc tune=zerolatency speed-preset=veryfast bframes=0 key-int-max=50 ! h264parse ! queue ! flv.video \
  a.audio ! queue ! audioconvert ! audioresample ! audio/x-raw,rate=48000 ! avenc_aac ! aacparse ! queue ! flv.audio \
  flvmux name=flv streamable=true ! rtmp2sink location=\"$RTMP_URL\""
