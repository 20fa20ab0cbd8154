// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-whisperfeat
 *
 * Streaming whisper audio features for MuseTalk: one `application/x-livetalk-features`
 * buffer per video frame, `[50, 384]` f32 (encoder steps `[2i-4, 2i+6)` of the whisper
 * encoder, 5 hidden states each, zeros outside the audio), PTS = frame time.
 *
 * The encoder runs on windows of `batch-frames` frames plus `context-left-ms` /
 * `context-right-ms` of audio; the element answers the LATENCY query with what that adds.
 * Silence (GAP input or audio below `silence-threshold-db`) gives GAP buffers and no
 * encoder run. A `livetalk-interrupt` event drops pending speech at once.
 *
 * ## Example pipeline
 * ```text
 * gst-launch-1.0 filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample ! \
 *   audio/x-raw,format=F32LE,rate=16000,channels=1 ! whisperfeat ! fakesink
 * ```
 */
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct WhisperFeat(ObjectSubclass<imp::WhisperFeat>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "whisperfeat",
        gst::Rank::NONE,
        WhisperFeat::static_type(),
    )
}
