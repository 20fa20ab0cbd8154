#!/usr/bin/env bash
# Live talking avatar published once into a Janus VideoRoom (janusvrwebrtcsink, gst-plugins-rs
# net/webrtc with feature janus): Janus fans it out to any number of viewers. JANUS is Janus's
# websockets endpoint, ROOM an existing VideoRoom (Janus's sample config has 1234), FEED an
# optional feed id, NAME the publisher's display name. No STUN server by default (loopback /
# LAN); set STUN for others.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
JANUS=${JANUS:-ws://127.0.0.1:8188}
ROOM=${ROOM:-1234}
NAME=${NAME:-livetalk}
feed=""; [ -n "${FEED:-}" ] && feed="signaller::feed-id=$FEED"
# webrtcsink's default STUN server is a public host; none unless asked for.
stun="stun-server=\"${STUN:-}\""
eval exec gst-launch-1.0 "$@" "$(avatar_pipeline true) ! queue ! ws. \
  a.audio ! queue ! audioconvert ! audioresample ! ws. \
  janusvrwebrtcsink name=ws $stun congestion-control=disabled \
    video-caps=video/x-vp8 audio-caps=audio/x-opus \
    signaller::janus-endpoint=\"$JANUS\" signaller::room-id=$ROOM $feed \
    signaller::display-name=\"$NAME\""
