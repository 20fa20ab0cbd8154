// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-avatarbin
 *
 * The whole lip-sync chain in one element: any raw audio in, the talking avatar's full frames
 * out on `video`, and the same audio, timestamps untouched, on `audio` (so a muxer, or an
 * audio sink beside the video sink, stays in sync).
 *
 * Inside: `tee`, then on the video branch `queue ! audioconvert ! audioresample !
 * F32LE 16 kHz mono ! (whisperfeat ! musetalk | lipwarp) ! queue ! avatarblend`, and on the audio branch
 * a `queue`. The lip driver is chosen when the element goes to READY (`driver`): `auto` takes
 * musetalk when `model-dir` holds `unet.onnx` and `vae_decoder.onnx` and the avatar has
 * MuseTalk latents, else lipwarp; the choice and its reason are posted on the bus as a
 * `livetalk-driver` element message (`driver`, `reason`) and can be read back from
 * `active-driver`. A missing or broken avatar, or a driver that cannot run, is an element
 * error at READY.
 *
 * `play-action` / `stop-action` are forwarded to avatarblend. A `livetalk-interrupt` event
 * coming with the audio (the TTS sources send it on `flush`), or sent to the element with
 * `gst_element_send_event()`, reaches the lip driver: pending speech frames become idle.
 * The LATENCY query is answered on both source pads with what the chain adds.
 *
 * ## Example pipeline
 * ```text
 * gst-launch-1.0 piperttssrc text="Hello" ! avatarbin avatar=avatars/anna name=a \
 *   a.video ! videoconvert ! autovideosink  a.audio ! audioconvert ! autoaudiosink
 * ```
 */
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct AvatarBin(ObjectSubclass<imp::AvatarBin>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "avatarbin",
        gst::Rank::NONE,
        AvatarBin::static_type(),
    )
}
