// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-lipwarp
 *
 * A lip driver that needs no model weights: the same output as `musetalk` (256x256 RGB face
 * crops of the avatar with an `AvatarFrameMeta`), driven by the audio itself. Each video
 * frame's audio sets how far the jaw drops (level) and how wide the lips spread (spectral
 * centroid); a smooth mesh warp opens the mouth of the avatar's own face crop. Silence gives
 * GAP buffers carrying only the meta, so `avatarblend` shows the idle frame.
 *
 * ## Example pipeline
 * ```text
 * gst-launch-1.0 filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample ! \
 *   audio/x-raw,format=F32LE,rate=16000,channels=1 ! lipwarp avatar=my-avatar ! \
 *   avatarblend avatar=my-avatar ! videoconvert ! autovideosink
 * ```
 */
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct LipWarp(ObjectSubclass<imp::LipWarp>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "lipwarp",
        gst::Rank::NONE,
        LipWarp::static_type(),
    )
}
