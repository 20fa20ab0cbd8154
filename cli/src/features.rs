//! `livetalk features`: an audio file's whisper log-mel or per-frame features, as .npy.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use gst::prelude::*;
use gstlivetalk::npy::NpyF32;

#[derive(clap::Args)]
pub struct Args {
    /// Audio file (anything GStreamer decodes).
    input: PathBuf,
    /// Write the normalised log-mel [80, frames] (10 ms frames) here.
    #[arg(long)]
    mel: Option<PathBuf>,
    /// Write the per-video-frame features [frames, 50, 384] here (silent frames are zeros).
    #[arg(long)]
    features: Option<PathBuf>,
    /// Whisper encoder ONNX (default: the set-up cache's).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Video frame rate of the features.
    #[arg(long, default_value_t = 25)]
    fps: i32,
    /// Pad every encoder window to 30 s, as MuseTalk does.
    #[arg(long)]
    pad_30s: bool,
    /// Device: cpu, cuda, cuda:N, tensorrt, tensorrt:N.
    #[arg(long, default_value = "cpu", value_parser = crate::launch::parse_device)]
    device: gstlivetalk::inference::Device,
}

/// Pulls every sample of `sink` until EOS, handing each buffer to `each`; an error message on
/// the pipeline's bus ends it with that error. Leaves the pipeline in NULL.
pub fn pull_until_eos(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    what: &str,
    mut each: impl FnMut(&gst::BufferRef) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let bus = pipeline.bus().unwrap();
    let result = loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            let buf = sample.buffer().context("sample without buffer")?;
            if let Err(e) = each(buf) {
                break Err(e);
            }
        } else if sink.is_eos() {
            break Ok(());
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            break Err(anyhow::anyhow!("{what}: {} ({:?})", e.error(), e.debug()));
        }
    };
    pipeline.set_state(gst::State::Null)?;
    result
}

/// Decodes any audio file to 16 kHz mono f32 with GStreamer.
pub fn decode_16k(path: &Path) -> anyhow::Result<Vec<f32>> {
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path)
        .build()?;
    let decode = gst::ElementFactory::make("decodebin").build()?;
    let convert = gst::ElementFactory::make("audioconvert").build()?;
    let resample = gst::ElementFactory::make("audioresample").build()?;
    let sink = gst_app::AppSink::builder()
        .caps(&"audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved".parse()?)
        .sync(false)
        .build();
    pipeline.add_many([&src, &decode, &convert, &resample, sink.upcast_ref()])?;
    src.link(&decode)?;
    gst::Element::link_many([&convert, &resample, sink.upcast_ref()])?;
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        if let Some(convert) = convert_weak.upgrade() {
            let sinkpad = convert.static_pad("sink").unwrap();
            if !sinkpad.is_linked()
                && pad.current_caps().is_none_or(|c| {
                    c.structure(0)
                        .is_some_and(|s| s.name().starts_with("audio/"))
                })
            {
                let _ = pad.link(&sinkpad);
            }
        }
    });
    pipeline.set_state(gst::State::Playing)?;
    let mut samples = Vec::new();
    pull_until_eos(
        &pipeline,
        &sink,
        &format!("decoding {}", path.display()),
        |buf| {
            let map = buf.map_readable()?;
            samples.extend(
                map.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            Ok(())
        },
    )?;
    Ok(samples)
}

/// Runs whisperfeat over the samples as fast as possible; frames in order, `None` = silent.
pub fn whisper_features(
    samples: &[f32],
    configure: impl FnOnce(&gst::Element),
) -> anyhow::Result<(Vec<Option<Vec<f32>>>, gst::Structure)> {
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&"audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved".parse()?)
        .format(gst::Format::Time)
        .is_live(false)
        .block(true)
        .max_bytes(1 << 20)
        .build();
    let wf = gst::ElementFactory::make("whisperfeat").build()?;
    configure(&wf);
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline.add_many([src.upcast_ref(), &wf, sink.upcast_ref()])?;
    gst::Element::link_many([src.upcast_ref(), &wf, sink.upcast_ref()])?;
    pipeline.set_state(gst::State::Playing)?;
    let feeder = {
        let src = src.clone();
        let samples = samples.to_vec();
        std::thread::spawn(move || {
            for (k, chunk) in samples.chunks(1600).enumerate() {
                let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
                let mut buf = gst::Buffer::from_mut_slice(bytes);
                buf.get_mut()
                    .unwrap()
                    .set_pts(gst::ClockTime::from_mseconds(100 * k as u64));
                if src.push_buffer(buf).is_err() {
                    return;
                }
            }
            let _ = src.end_of_stream();
        })
    };
    let mut frames = Vec::new();
    let result = pull_until_eos(&pipeline, &sink, "whisperfeat", |buf| {
        if buf.flags().contains(gst::BufferFlags::GAP) {
            frames.push(None);
        } else {
            let map = buf.map_readable()?;
            frames.push(Some(
                map.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ));
        }
        Ok(())
    });
    let _ = feeder.join();
    result?;
    let stats = wf.property::<gst::Structure>("stats");
    Ok((frames, stats))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.mel.is_none() && a.features.is_none() {
        bail!("say what to write: --mel FILE and/or --features FILE");
    }
    let samples = decode_16k(&a.input)?;
    eprintln!(
        "{}: {:.2} s of audio",
        a.input.display(),
        samples.len() as f64 / 16000.0
    );
    if let Some(out) = &a.mel {
        let mel = gstlivetalk::mel::LogMel::new().compute(&samples);
        let frames = mel.len() / 80;
        NpyF32::new(vec![80, frames], mel).write(out)?;
        eprintln!("mel [80, {frames}] -> {}", out.display());
    }
    if let Some(out) = &a.features {
        let (frames, stats) = whisper_features(&samples, |wf| {
            if let Some(m) = &a.model {
                wf.set_property("model", m.display().to_string());
            }
            wf.set_property("fps", gst::Fraction::new(a.fps, 1));
            wf.set_property("pad-30s", a.pad_30s);
            let (kind, id) = gstlivetalk::enums::Device::split(a.device);
            wf.set_property("device", kind);
            wf.set_property("device-id", id);
        })?;
        let n = frames.len();
        let silent = frames.iter().filter(|f| f.is_none()).count();
        let mut data = Vec::with_capacity(n * 50 * 384);
        for f in frames {
            match f {
                Some(v) => data.extend(v),
                None => data.extend(std::iter::repeat_n(0.0, 50 * 384)),
            }
        }
        NpyF32::new(vec![n, 50, 384], data).write(out)?;
        eprintln!(
            "features [{n}, 50, 384] ({silent} silent) -> {}; {stats}",
            out.display()
        );
    }
    Ok(())
}
