// SPDX-License-Identifier: MPL-2.0
/**
 * SECTION:element-musetalk
 *
 * MuseTalk v1.5 lip-sync: for every `application/x-livetalk-features` buffer (whisperfeat's
 * `[50,384]` audio feature of one video frame) a 256x256 RGB face crop of avatar frame `i`
 * (ping-pong index, advancing every frame, speaking or not, derived from the buffer offset).
 *
 * Per speech frame: the avatar's latent `i` (`[8,32,32]`: lower-half-masked crop latent ++
 * full crop latent), the audio feature plus sinusoidal positional encoding, the UNet at
 * timestep 0, the latent divided by 0.18215, the VAE decoder, `(x/2+0.5)` clamped to [0,1]
 * times 255, rounded. Up to `batch-size` speech frames run together.
 *
 * In a live pipeline each frame has a deadline on the pipeline clock (base time + running
 * time + pipeline latency - half a frame). The element learns the cost of a batch (a fixed
 * part plus a part per frame, from batch times measured on the pipeline clock, starting from
 * a batch of one and one of the largest size timed at READY) and waits
 * for a fuller batch only while the earliest deadline still allows it (a single-shot clock
 * wait, cut short when a frame arrives, on flush and on stop). Frames that cannot make
 * their deadline even alone (inference slower than real time, or QoS from downstream) are
 * skipped: pushed as GAP buffers with `speaking = true` (avatarblend holds the last mouth),
 * counted in `stats`. Timestamps are never changed, so audio and video do not drift.
 * Offline, every frame is made, in full batches. GAP features (silence) cost no inference: a GAP buffer with only the
 * `AvatarFrameMeta`. A `livetalk-interrupt` event turns pending speech frames into idle ones.
 *
 * The element answers the LATENCY query with `batch-size` frame durations plus
 * `inference-latency` when live. Elements naming the same model files, device and precision
 * share one ONNX Runtime session and, with `shared-batching`, one batching service.
 *
 * The element's thread makes the frames and pushes them. Live, put a `queue` after it (as
 * `avatarbin` does): otherwise it also blends, encodes or waits in a synchronised sink until
 * each frame's time, and the frames due meanwhile miss their deadlines.
 *
 * ## Example pipeline
 * ```text
 * gst-launch-1.0 filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample ! \
 *   audio/x-raw,format=F32LE,rate=16000,channels=1 ! whisperfeat ! \
 *   musetalk avatar=avatars/anna model-dir=models/musetalk device=cuda batch-size=8 ! queue ! \
 *   avatarblend avatar=avatars/anna ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
 * ```
 */
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct MuseTalk(ObjectSubclass<imp::MuseTalkElement>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "musetalk",
        gst::Rank::NONE,
        MuseTalk::static_type(),
    )
}
