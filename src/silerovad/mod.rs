// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-silerovad
 *
 * Voice activity detection with Silero VAD v5: 16 kHz mono F32LE audio in, the same audio out
 * (buffers and timestamps untouched). The model runs on 512-sample windows (32 ms) with its
 * recurrent state carried across windows; starts and ends follow the hysteresis of Silero's
 * own `VADIterator` (`threshold`, `threshold - 0.15` to end, `min-silence-ms`,
 * `speech-pad-ms`).
 *
 * Each start and end is posted as a `livetalk-vad` element message (`status` start|end,
 * `running-time`) and sent downstream as a serialized custom event with the same structure,
 * before the buffer in which it was decided. GAP input costs no inference (silence); FLUSH,
 * a jump in the timestamps and READY start a fresh stream. Speech still going on at EOS ends
 * there.
 *
 * ## Example pipeline
 * ```text
 * gst-launch-1.0 -m filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample ! \
 *   audio/x-raw,format=F32LE,rate=16000,channels=1 ! silerovad ! fakesink
 * ```
 */
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct SileroVad(ObjectSubclass<imp::SileroVad>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "silerovad",
        gst::Rank::NONE,
        SileroVad::static_type(),
    )
}
