# Shared by the pipeline scripts: settings and the avatar half of every pipeline.
CACHE=${LIVETALK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/livetalk}
AVATAR=${AVATAR:-$CACHE/avatars/astronaut}
TEXT=${TEXT:-Hello! I am a talking avatar, made with GStreamer.}
DRIVER=${DRIVER:-auto}
# TTS -> avatarbin "a": raw I420 video left open for the script; the speech is on "a.audio".
avatar_pipeline() {
  local live=$1
  printf '%s' "piperttssrc is-live=$live gap-silence=false text=\"$TEXT\" ! \
    avatarbin name=a avatar=\"$AVATAR\" driver=$DRIVER \
    a.video ! videoconvert ! video/x-raw,format=I420"
}
