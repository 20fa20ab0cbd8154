//! `livetalk render`: text or an audio file -> talking-avatar MP4, offline (not live).

use std::path::PathBuf;
use std::time::Instant;

use crate::launch::{AvatarChain, DriverArg, parse_device, quote};
use anyhow::{Context, bail};
use gst::prelude::*;
use gstlivetalk::avatar::Avatar;
use gstlivetalk::inference::Device;

use crate::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Text to speak (with piperttssrc).
    #[arg(long, conflicts_with = "audio", required_unless_present = "audio")]
    pub text: Option<String>,
    /// An audio file to lip-sync instead of text.
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Avatar directory (default: the demo avatar of the set-up cache).
    #[arg(long)]
    pub avatar: Option<PathBuf>,
    /// Piper voice (.onnx with its .onnx.json) for --text (default: the set-up cache's).
    #[arg(long)]
    pub voice: Option<PathBuf>,
    /// Lip driver: auto (musetalk when its models are installed and the avatar has latents,
    /// else lipwarp), musetalk or lipwarp.
    #[arg(long, value_enum, default_value_t = DriverArg::Auto)]
    pub driver: DriverArg,
    /// MuseTalk models (unet.onnx, vae_decoder.onnx); default: the set-up cache's musetalk/.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Device for the models: cpu, cuda, cuda:N, tensorrt, tensorrt:N.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Output MP4.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

pub fn default_avatar() -> PathBuf {
    gstlivetalk::paths::cache_dir()
        .join("avatars")
        .join("astronaut")
}

/// AAC is encoded at 48 kHz: its encoder puts 1024 samples of priming before the audio and
/// GStreamer 1.22's mp4mux signals them in no edit list (it writes media_time 0 and drops a
/// track's start offset), so players play them and the audio comes 1024 samples late: 21 ms
/// at 48 kHz instead of 46 ms at 22.05 kHz. B-frames are off: their reordering delay (80 ms
/// with x264's defaults) is not compensated by the muxer either.
const AAC_RATE: u64 = 48_000;

#[derive(serde::Serialize)]
struct Summary {
    output: String,
    driver: String,
    why: String,
    seconds: f64,
    wall_seconds: f64,
    realtime_factor: f64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let avatar_dir = a.avatar.clone().unwrap_or_else(default_avatar);
    let avatar = Avatar::load(&avatar_dir)
        .with_context(|| "run scripts/setup.sh to make the demo avatar, or pass --avatar")?;

    let audio_src = match (&a.text, &a.audio) {
        (_, Some(file)) => {
            if !file.is_file() {
                bail!("{}: no such file", file.display());
            }
            format!("filesrc location={} ! decodebin", quote(file))
        }
        (Some(text), None) => {
            if gst::ElementFactory::find("piperttssrc").is_none() {
                bail!("piperttssrc is not available in this build");
            }
            let voice = a
                .voice
                .as_ref()
                .map(|v| format!(" model={}", quote(v)))
                .unwrap_or_default();
            let text = text.replace('\\', "\\\\").replace('"', "\\\"");
            format!("piperttssrc name=tts is-live=false{voice} text=\"{text}\"")
        }
        (None, None) => unreachable!("clap requires one"),
    };
    let chain = AvatarChain {
        avatar: avatar_dir.clone(),
        driver: a.driver.into(),
        model_dir: a.model_dir.clone(),
        device: a.device,
        actions: None,
    };
    let (w, h) = (avatar.manifest.width & !1, avatar.manifest.height & !1);
    let desc = format!(
        "{audio_src} ! {bin} \
         avatar.video ! videoconvert ! videoscale ! \
           video/x-raw,format=I420,width={w},height={h} ! x264enc speed-preset=veryfast bframes=0 ! h264parse ! queue ! mux. \
         avatar.audio ! audioconvert ! audioresample ! capsfilter name=aacin caps=audio/x-raw,rate={AAC_RATE} ! avenc_aac ! aacparse ! queue ! mux. \
         mp4mux name=mux ! filesink location={o}",
        bin = chain.describe("avatar"),
        o = quote(&a.output)
    );
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("building the pipeline: {desc}"))?
        .downcast::<gst::Pipeline>()
        .unwrap();
    let start = Instant::now();
    let bus = pipeline.bus().unwrap();
    if pipeline.set_state(gst::State::Playing).is_err() {
        let _ = pipeline.set_state(gst::State::Null);
        bail!("starting the pipeline: {}", crate::launch::bus_error(&bus));
    }
    let mut progress: Option<Progress> = None;
    let mut driver = (String::new(), String::new());
    let result = loop {
        match bus.timed_pop(gst::ClockTime::from_mseconds(250)) {
            Some(msg) => match msg.view() {
                gst::MessageView::Element(_) => {
                    if let Some(d) = crate::launch::driver_report(&msg) {
                        driver = d;
                    }
                }
                gst::MessageView::Eos(_) => break Ok(()),
                gst::MessageView::Error(e) => {
                    break Err(anyhow::anyhow!(
                        "{} ({})",
                        e.error(),
                        e.debug().map(|d| d.to_string()).unwrap_or_default()
                    ));
                }
                gst::MessageView::Warning(w) if !a.json => eprintln!("warning: {}", w.error()),
                _ => {}
            },
            None => {
                if let (Some(pos), Some(dur)) = (
                    pipeline.query_position::<gst::ClockTime>(),
                    pipeline.query_duration::<gst::ClockTime>(),
                ) {
                    let p = progress
                        .get_or_insert_with(|| Progress::new("rendering", dur.mseconds(), a.json));
                    p.inc(pos.mseconds().saturating_sub(p.done()));
                }
            }
        }
    };
    if let Some(p) = &progress {
        p.finish();
    }
    pipeline.set_state(gst::State::Null)?;
    result?;
    let wall = start.elapsed().as_secs_f64();
    let out = &a.output;
    let (driver, why) = driver;
    let seconds = crate::features::decode_16k(out)
        .map(|s| s.len() as f64 / 16000.0)
        .unwrap_or(0.0);
    let summary = Summary {
        output: out.display().to_string(),
        driver,
        why,
        seconds,
        wall_seconds: wall,
        realtime_factor: seconds / wall,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "lip driver: {} ({}); {:.2} s of video in {:.2} s ({:.1}x real time)",
            summary.driver, summary.why, seconds, wall, summary.realtime_factor
        );
        println!("{}", out.display());
    }
    Ok(())
}
