# Shared by the pipeline scripts: settings and the avatar half of every pipeline.
CACHE=${LIVETALK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/livetalk}
AVATAR=${AVATAR:-$CACHE/avatars/astronaut}
TEXT=${TEXT:-Hello! I am a talking avatar, made with GStreamer.}
# TTS -> tee "t" (speech audio) -> lipwarp -> avatarblend -> raw video, left open for the script.
avatar_pipeline() {
  local live=$1
  printf '%s' "piperttssrc is-live=$live gap-silence=false text=\"$TEXT\" ! audioconvert ! audioresample ! tee name=t \
    t. ! queue ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! \
    lipwarp avatar=\"$AVATAR\" ! avatarblend avatar=\"$AVATAR\" ! videoconvert ! video/x-raw,format=I420"
}
