//! The lip-sync chain end to end: audio -> whisperfeat -> musetalk -> avatarblend, offline.

use gst::prelude::*;
use gstlivetalk::avatar::{self, Avatar, BBox, FrameInfo, Image, Manifest};

#[test]
fn audio_to_full_frames_keeps_every_frame_and_its_timestamp() {
    gst::init().unwrap();
    gstlivetalk::plugin_register_static().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 4;
    let info = FrameInfo {
        face_box: BBox::new(20, 20, 60, 70),
        blend_box: BBox::new(10, 10, 70, 80),
    };
    let frames: Vec<Image> = (0..n)
        .map(|i| Image::from_fn(96, 96, 3, |x, y, c| (x + y + c as u32 * 60 + i * 9) as u8))
        .collect();
    let masks = vec![Image::from_fn(60, 70, 1, |_, y, _| if y > 35 { 255 } else { 0 }); n as usize];
    let latents: Vec<f32> = (0..n as usize * avatar::LATENT_LEN)
        .map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0)
        .collect();
    Avatar::write(
        dir.path(),
        &Manifest::new(25, 96, 96, "t", vec![info; n as usize]),
        &frames,
        &masks,
        Some(&latents),
    )
    .unwrap();
    let models = gstlivetalk::paths::test_models_dir();
    let desc = format!(
        "audiotestsrc wave=sine freq=220 volume=0.5 num-buffers=20 samplesperbuffer=1600 ! \
         audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved ! \
         whisperfeat model={m}/whisper_encoder.onnx ! \
         musetalk avatar={a} unet={m}/unet.onnx vae-decoder={m}/vae_decoder.onnx batch-size=4 name=m ! \
         avatarblend avatar={a} name=b ! appsink name=out sync=false",
        m = models.display(),
        a = dir.path().display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut pts = Vec::new();
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        let b = s.buffer().unwrap();
        assert_eq!(b.size(), 96 * 96 * 3);
        let m = gstlivetalk::meta::get(b).unwrap();
        assert_eq!(m.index as usize, avatar::mirror_index(n as usize, m.frame));
        pts.push(b.pts().unwrap());
    }
    let bus = pipeline.bus().unwrap();
    assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none());
    let muse = pipeline
        .by_name("m")
        .unwrap()
        .property::<gst::Structure>("stats");
    let blend = pipeline
        .by_name("b")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    // 2 s of audio at 25 fps.
    assert_eq!(pts.len(), 50, "{pts:?}");
    for (k, p) in pts.iter().enumerate() {
        assert_eq!(p.nseconds(), k as u64 * 40_000_000);
    }
    assert_eq!(muse.get::<u64>("frames").unwrap(), 50);
    assert_eq!(muse.get::<u64>("skipped-frames").unwrap(), 0);
    assert!(muse.get::<u64>("inferred-frames").unwrap() > 40, "{muse}");
    assert_eq!(
        blend.get::<u64>("speaking-frames").unwrap(),
        muse.get::<u64>("inferred-frames").unwrap()
    );
}
