//! `livetalk transcribe`: an audio file's transcript, through the same elements a live voice
//! session uses (`silerovad ! whisperasr`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use gst::prelude::*;

#[derive(clap::Args)]
pub struct Args {
    /// Audio file (anything GStreamer decodes).
    input: PathBuf,
    /// Print one JSON object per utterance (text, final, start and end in seconds).
    #[arg(long)]
    json: bool,
    /// Transcribe the whole file in windows of up to 30 s instead of utterances found by
    /// Silero VAD.
    #[arg(long)]
    no_vad: bool,
    /// Whisper model directory (default: the set-up cache's whisper-tiny.en).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Language of a multilingual model (en, de, fr, ...).
    #[arg(long, default_value = "en")]
    language: String,
    /// Device: cpu, cuda, cuda:N, tensorrt, tensorrt:N.
    #[arg(long, default_value = "cpu", value_parser = crate::launch::parse_device)]
    device: gstlivetalk::inference::Device,
    /// Intra-op threads of whisper on CPU (0: ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Print the cost on stderr: VAD inference time per second of audio, whisper's
    /// real-time factor (inference time over transcribed audio).
    #[arg(long)]
    stats: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.input.is_file() {
        bail!("{}: no such file", args.input.display());
    }
    let src = gst::ElementFactory::make("filesrc")
        .property(
            "location",
            args.input.to_str().context("path is not UTF-8")?,
        )
        .build()?;
    let decode = gst::ElementFactory::make("decodebin").build()?;
    let convert = gst::ElementFactory::make("audioconvert").build()?;
    let resample = gst::ElementFactory::make("audioresample").build()?;
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("audio/x-raw")
                .field("format", "F32LE")
                .field("rate", 16_000i32)
                .field("channels", 1i32)
                .field("layout", "interleaved")
                .build(),
        )
        .build()?;
    let (kind, id) = gstlivetalk::enums::Device::split(args.device);
    let vad = gst::ElementFactory::make("silerovad")
        .property("device", kind)
        .property("device-id", id)
        .build()?;
    let mut asr = gst::ElementFactory::make("whisperasr")
        .property("device", kind)
        .property("device-id", id)
        .property("language", &args.language)
        .property("threads", args.threads)
        .property_from_str("segmentation", if args.no_vad { "windows" } else { "vad" });
    if let Some(dir) = &args.model_dir {
        asr = asr.property("model-dir", dir.to_str().context("path is not UTF-8")?);
    }
    let asr = asr.build()?;
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()?;
    let pipeline = gst::Pipeline::new();
    let chain: Vec<&gst::Element> = if args.no_vad {
        vec![&convert, &resample, &caps, &asr, &sink]
    } else {
        vec![&convert, &resample, &caps, &vad, &asr, &sink]
    };
    pipeline.add_many([&src, &decode])?;
    pipeline.add_many(chain.iter().copied())?;
    src.link(&decode)?;
    gst::Element::link_many(chain.iter().copied())?;
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let is_audio = pad
            .current_caps()
            .or_else(|| Some(pad.query_caps(None)))
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("audio/")))
            .unwrap_or(false);
        if let Some(convert) = convert_weak.upgrade()
            && is_audio
        {
            let sinkpad = convert.static_pad("sink").unwrap();
            if !sinkpad.is_linked() {
                let _ = pad.link(&sinkpad);
            }
        }
    });

    pipeline
        .set_state(gst::State::Playing)
        .context("cannot start the pipeline (see the error above)")
        .inspect_err(|_| print_bus_error(&pipeline))?;
    let bus = pipeline.bus().unwrap();
    let mut heard = 0;
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(1)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(anyhow::anyhow!("{} ({:?})", e.error(), e.debug()));
            }
            gst::MessageView::Element(_) => {
                if let Some(t) = msg
                    .structure()
                    .and_then(gstlivetalk::events::parse_transcript)
                {
                    heard += 1;
                    if args.json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "text": t.text,
                                "final": t.is_final,
                                "start": t.start.nseconds() as f64 / 1e9,
                                "end": t.end.nseconds() as f64 / 1e9,
                            })
                        );
                    } else {
                        println!("{}", t.text);
                    }
                }
            }
            _ => {}
        }
    };
    if args.stats {
        print_stats(&vad, &asr, args.no_vad);
    }
    pipeline.set_state(gst::State::Null)?;
    result?;
    if heard == 0 && !args.json {
        eprintln!("livetalk: no speech heard in {}", args.input.display());
    }
    Ok(())
}

fn print_stats(vad: &gst::Element, asr: &gst::Element, no_vad: bool) {
    let secs = |s: &gst::StructureRef, f: &str| {
        s.get::<gst::ClockTime>(f)
            .map(|t| t.nseconds() as f64 / 1e9)
            .unwrap_or(0.0)
    };
    if !no_vad {
        let v = vad.property::<gst::Structure>("stats");
        let windows =
            v.get::<u64>("windows-run").unwrap_or(0) + v.get::<u64>("windows-gap").unwrap_or(0);
        let audio = windows as f64 * 512.0 / 16_000.0;
        let t = secs(&v, "inference-time");
        eprintln!(
            "silerovad: {audio:.1} s of audio in {} windows, {:.1} ms inference ({:.2} ms per second of audio)",
            windows,
            t * 1e3,
            if audio > 0.0 { t * 1e3 / audio } else { 0.0 }
        );
    }
    let a = asr.property::<gst::Structure>("stats");
    eprintln!(
        "whisperasr: {} pieces transcribed ({} silent, {} no-speech, {} repetitions), {:.2} s of audio in {:.2} s: real-time factor {:.3}",
        a.get::<u64>("transcribed").unwrap_or(0),
        a.get::<u64>("silent").unwrap_or(0),
        a.get::<u64>("no-speech").unwrap_or(0),
        a.get::<u64>("repetitions").unwrap_or(0),
        secs(&a, "audio-time"),
        secs(&a, "inference-time"),
        a.get::<f64>("real-time-factor").unwrap_or(0.0)
    );
}

fn print_bus_error(pipeline: &gst::Pipeline) {
    if let Some(bus) = pipeline.bus()
        && let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
        && let gst::MessageView::Error(e) = msg.view()
    {
        eprintln!("livetalk: {}", e.error());
    }
}
