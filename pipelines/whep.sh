#!/usr/bin/env bash
# Live talking avatar that WHEP players (OBS's WHEP source, a WHEP web player, gst-plugins-rs'
# whepclientsrc) watch, served by whepserversink (gst-plugins-rs, net/webrtc): its own HTTP
# server on WHEP_ADDR answers each player at http://WHEP_ADDR/whep/endpoint and encodes VP8 +
# Opus for it, as webrtcsink does for its consumers (several players may watch at once).
# No STUN server by default (loopback / LAN); set STUN=stun://host:port for others.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
WHEP_ADDR=${WHEP_ADDR:-127.0.0.1:9090}
eval exec gst-launch-1.0 "$@" "$(avatar_pipeline true) ! queue ! ws. \
  a.audio ! queue ! audioconvert ! audioresample ! ws. \
  whepserversink name=ws signaller::host-addr=\"http://$WHEP_ADDR\" \
    signaller::stun-server=\"${STUN:-}\" stun-server=\"${STUN:-}\" congestion-control=disabled \
    video-caps=video/x-vp8 audio-caps=audio/x-opus"
