#!/usr/bin/env bash
# Live talking avatar pushed to a WHIP endpoint (a media server or SFU that takes WHIP: SRS,
# Janus's WHIP server, a cloud ingest) with whipclientsink (gst-plugins-rs, net/webrtc), which
# encodes VP8 + Opus as webrtcsink does. WHIP_TOKEN: the endpoint's bearer token, if any.
# No STUN server by default (loopback / LAN); set STUN=stun://host:port for others.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WHIP_URL=${WHIP_URL:?set WHIP_URL, e.g. http://127.0.0.1:1985/rtc/v1/whip/?app=live&stream=avatar}
token=""; [ -n "${WHIP_TOKEN:-}" ] && token="signaller::auth-token=\"$WHIP_TOKEN\""
eval exec gst-launch-1.0 "$@" "$(avatar_pipeline true) ! queue ! ws. \
  a.audio ! queue ! audioconvert ! audioresample ! ws. \
  whipclientsink name=ws signaller::whip-endpoint=\"$WHIP_URL\" $token \
    stun-server=\"${STUN:-}\" congestion-control=disabled \
    video-caps=video/x-vp8 audio-caps=audio/x-opus"
