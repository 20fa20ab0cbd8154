//! Pipelines built from `gst-launch-1.0` descriptions: the avatar chain (`avatarbin`) that
//! `render`, `serve` and `bench sessions` share, and helpers around it.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use gst::prelude::*;
use gstlivetalk::enums::Driver;

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

/// What every application asks of `avatarbin`: the lip-sync chain is written once, in the bin.
#[derive(Debug, Clone)]
pub struct AvatarChain {
    pub avatar: PathBuf,
    pub driver: Driver,
    /// MuseTalk models; `None`: the bin's default (the set-up cache's `models/musetalk`).
    pub model_dir: Option<PathBuf>,
    pub device: gstlivetalk::inference::Device,
    pub actions: Option<PathBuf>,
}

impl AvatarChain {
    /// `avatarbin name=NAME ...`: its pads are `NAME.video` and `NAME.audio`.
    pub fn describe(&self, name: &str) -> String {
        let (kind, id) = gstlivetalk::enums::Device::split(self.device);
        let mut d = format!(
            "avatarbin name={name} avatar={} driver={} device={} device-id={id}",
            quote(&self.avatar),
            self.driver.nick(),
            kind.nick()
        );
        if let Some(m) = &self.model_dir {
            d.push_str(&format!(" model-dir={}", quote(m)));
        }
        if let Some(a) = &self.actions {
            d.push_str(&format!(" actions={}", quote(a)));
        }
        d
    }
}

/// The `livetalk-driver` message of an `avatarbin`: (driver, why).
pub fn driver_report(msg: &gst::MessageRef) -> Option<(String, String)> {
    let s = msg.structure()?;
    (s.name() == gstlivetalk::events::DRIVER).then(|| {
        (
            s.get::<String>("driver").unwrap_or_default(),
            s.get::<String>("reason").unwrap_or_default(),
        )
    })
}

/// The lip driver, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverArg {
    /// musetalk when its models are installed and the avatar has latents, else lipwarp.
    Auto,
    Musetalk,
    Lipwarp,
}

impl From<DriverArg> for Driver {
    fn from(d: DriverArg) -> Self {
        match d {
            DriverArg::Auto => Driver::Auto,
            DriverArg::Musetalk => Driver::Musetalk,
            DriverArg::Lipwarp => Driver::Lipwarp,
        }
    }
}

/// A `--device` value: cpu, cuda, cuda:N, tensorrt, tensorrt:N.
pub fn parse_device(s: &str) -> Result<gstlivetalk::inference::Device, String> {
    s.parse()
}

/// The first error message waiting on a bus (an element that failed its state change says
/// why there), as text.
pub fn bus_error(bus: &gst::Bus) -> String {
    bus.pop_filtered(&[gst::MessageType::Error])
        .and_then(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "no element said why".into())
}
