// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-edgettssrc
 *
 * Online text-to-speech with the Edge read-aloud voices (the voices LiveTalking uses by
 * default): a live source that sends each sentence to the service over a websocket, decodes
 * the MP3 it answers with inside the element, and produces
 * `audio/x-raw,format=S16LE,channels=1,rate=24000`. While idle it produces silence flagged
 * GAP, in real time; with `is-live=false` it speaks its queue as fast as possible and ends
 * with EOS.
 *
 * Text comes from the `text` property, the `speak` action signal, or a streamed answer
 * through `push-fragment` / `end-fragments`, cut into sentences at punctuation. The text is
 * cleaned of control characters and XML-escaped (user text cannot inject SSML), and split
 * under the service's 4096-byte limit. Sentence n+1 is fetched while sentence n plays.
 * `flush` drops queued and in-flight speech at once and sends `livetalk-interrupt`
 * downstream. Sentence start/end go out as `livetalk-speech` messages and events, word
 * boundaries as `livetalk-word` (`text`, `offset`, `duration`, `running-time`).
 *
 * Network faults never stop the pipeline: a refused connection, a disconnection, garbage
 * frames, no audio or a server slower than `timeout` give a warning on the bus; the sentence
 * is retried once, then skipped, and silence goes on.
 *
 * The service needs the network; `endpoint` points the element at another server speaking
 * the same protocol (a proxy, a test server).
 *
 * ## Example pipeline
 * ```text
 * gst-launch-1.0 edgettssrc voice=zh-CN-YunxiaNeural rate=+10% text="你好，我是数字人。" ! \
 *   audioconvert ! audioresample ! autoaudiosink
 * ```
 */
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct EdgeTtsSrc(ObjectSubclass<imp::EdgeTtsSrc>)
        @extends crate::ttsbase::TtsBaseSrc, gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "edgettssrc",
        gst::Rank::NONE,
        EdgeTtsSrc::static_type(),
    )
}
