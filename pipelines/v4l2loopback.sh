#!/usr/bin/env bash
# Live talking avatar as a virtual camera: v4l2sink on a v4l2loopback device
# (sudo modprobe v4l2loopback exclusive_caps=1; DEVICE=/dev/video10 by default). The audio
# plays on the default sound output.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DEVICE=${DEVICE:-/dev/video10}
AUDIO_SINK=${AUDIO_SINK:-autoaudiosink}
eval exec gst-launch-1.0 "$@" "$(avatar_pipeline true) ! videoconvert ! video/x-raw,format=YUY2 ! \
  v4l2sink device=\"$DEVICE\" sync=true \
  a.audio ! queue ! audioconvert ! audioresample ! $AUDIO_SINK"
