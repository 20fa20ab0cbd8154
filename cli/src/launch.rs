//! Helpers for pipelines built from `gst-launch-1.0` descriptions.

use std::path::Path;

use anyhow::anyhow;
use gst::prelude::*;

/// A path as a quoted gst-launch property value.
pub fn quote(p: &Path) -> String {
    format!(
        "\"{}\"",
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// Makes the audio leaving `element` continuous for the encoder after it.
///
/// While the avatar is idle the TTS sources send GAP buffers, and some encoders (avenc_aac)
/// drop them: the AAC track would have holes, which RTMP servers, FLV demuxers and players
/// stall on. `element` must come after an `audioconvert`, which has already filled those
/// buffers with silence; here their GAP flag is cleared, so they are encoded as silence.
pub fn encode_gaps_as_silence(pipeline: &gst::Pipeline, element: &str) -> anyhow::Result<()> {
    let pad = pipeline
        .by_name(element)
        .and_then(|e| e.static_pad("src"))
        .ok_or_else(|| anyhow!("no element {element} with a src pad in the pipeline"))?;
    pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(gst::PadProbeData::Buffer(buf)) = &mut info.data
            && buf.flags().contains(gst::BufferFlags::GAP)
            && buf.size() > 0
        {
            buf.make_mut().unset_flags(gst::BufferFlags::GAP);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}
