#!/usr/bin/env bash
# Live talking avatar over WebRTC: webrtcsink (gst-plugins-rs, net/webrtc) runs its own
# signalling server (ws://127.0.0.1:8443) and serves WEB_DIR (a page using gstwebrtc-api) on
# http://127.0.0.1:8080/. No STUN server by default (loopback / LAN); set STUN for others.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WEB_DIR=${WEB_DIR:-$CACHE/web/node_modules/gstwebrtc-api/dist}
stun=""; [ -n "${STUN:-}" ] && stun="stun-server=$STUN"
eval exec gst-launch-1.0 "$@" "$(avatar_pipeline true) ! queue ! ws. \
  a.audio ! queue ! audioconvert ! audioresample ! ws. \
  webrtcsink name=ws run-signalling-server=true signalling-server-host=127.0.0.1 \
    run-web-server=true web-server-directory=\"$WEB_DIR\" $stun"
