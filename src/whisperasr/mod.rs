// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-whisperasr
 *
 * Speech recognition with whisper (greedy decoding, no timestamps): 16 kHz mono F32LE audio
 * in, the same audio out; what was said comes out as `livetalk-transcript` element messages
 * and serialized downstream custom events (`text`, `final`, `start`, `end` running times).
 *
 * After a `silerovad` (or anything that sends `livetalk-vad` events), each utterance between
 * a start and an end is transcribed once it ends. Without VAD events (segmentation `auto`
 * until the first one arrives, or `windows`) the audio is transcribed in windows of
 * `max-window-ms`. Utterances longer than `max-window-ms` (at most whisper's 30 s) are cut
 * at their quietest moment near the limit; the pieces before the last have `final=false`.
 *
 * Guards: audio below `silence-threshold-db` is not transcribed; whisper's no-speech rule
 * (`no-speech-threshold`, `logprob-threshold`) drops what the model thinks is silence; a
 * token loop stops decoding and keeps one copy.
 *
 * Decoding runs on a worker thread: the audio flows on, and the events go downstream
 * before the next buffer after they are ready (at EOS the element waits for them). FLUSH and
 * READY drop pending work.
 *
 * The model directory (made by `models/convert_whisper.py --decoder`) holds encoder.onnx,
 * cross_kv.onnx, decoder.onnx, tokenizer.json and asr.json; the set-up makes whisper
 * tiny.en's. A multilingual model transcribes in `language`.
 *
 * ## Example pipeline
 * ```text
 * gst-launch-1.0 -m filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample ! \
 *   audio/x-raw,format=F32LE,rate=16000,channels=1 ! silerovad ! whisperasr ! fakesink
 * ```
 */
use gst::glib;
use gst::prelude::*;

mod imp;

/// Which audio is transcribed.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWhisperAsrSegmentation")]
pub enum Segmentation {
    #[enum_value(
        name = "Auto: windows until the first VAD event, utterances after",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "VAD: only utterances between VAD start and end", nick = "vad")]
    Vad = 1,
    #[enum_value(
        name = "Windows: windows of max-window-ms, VAD events ignored",
        nick = "windows"
    )]
    Windows = 2,
}

glib::wrapper! {
    pub struct WhisperAsr(ObjectSubclass<imp::WhisperAsr>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    #[cfg(feature = "doc")]
    Segmentation::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "whisperasr",
        gst::Rank::NONE,
        WhisperAsr::static_type(),
    )
}
