// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-avatarblend
 *
 * Pastes the 256x256 face crops of a lip driver (`musetalk`) back into the full avatar
 * frames, as MuseTalk's `get_image_blending` does: the crop is resized (bilinear) into face
 * box `i` and blended over avatar frame `i` with the feathered mask of blend box `i`
 * (`i` = the `AvatarFrameMeta` index). Only the face box is computed; idle (GAP) frames are
 * the avatar's frames as they are, pushed without a copy.
 *
 * `transition-ms` crossfades between idle and speaking, both ways (the last crop fades out).
 * A GAP buffer whose meta still says `speaking` (a speech frame the lip driver skipped for
 * QoS) shows the last crop again on frame `i`.
 *
 * Action clips (`actions`: a JSON file, see `actions.rs`) play in place of the idle cycle
 * when `play-action(name)` is emitted while idle, then the idle cycle returns (`loop` clips
 * play until `stop-action` or until speech starts).
 *
 * Output: `video/x-raw,format=RGB` at the avatar's size, at the input frame rate, with the
 * input's timestamps and meta.
 *
 * ## Example pipeline
 * ```text
 * gst-launch-1.0 filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample ! \
 *   audio/x-raw,format=F32LE,rate=16000,channels=1 ! whisperfeat ! \
 *   musetalk avatar=avatars/anna model-dir=models/musetalk ! \
 *   avatarblend avatar=avatars/anna transition-ms=120 ! videoconvert ! autovideosink
 * ```
 */
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct AvatarBlend(ObjectSubclass<imp::AvatarBlend>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "avatarblend",
        gst::Rank::NONE,
        AvatarBlend::static_type(),
    )
}
