//! `livetalk render` end to end: speech with silence around it -> MP4; decode it and check
//! duration, both streams, mouth motion only while speaking, and A/V sync at the output.

use std::path::Path;
use std::process::Command;

use gst::prelude::*;
use gstlivetalk::avatar::{Avatar, Image, mirror_index};

fn write_wav(path: &Path, samples: &[f32], rate: u32) {
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect();
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    std::fs::write(path, w).unwrap();
}

/// What a player gets from an MP4: frames with their PTS, audio (16 kHz mono) with the PTS of
/// its first sample, the duration.
struct Decoded {
    frames: Vec<(gst::ClockTime, Image)>,
    audio_start: gst::ClockTime,
    audio: Vec<f32>,
    duration: gst::ClockTime,
}

fn decode(path: &Path) -> Decoded {
    gst::init().unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin name=d \
         d. ! queue ! videoconvert ! video/x-raw,format=RGBx ! appsink name=v sync=false \
         d. ! queue ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! appsink name=a sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let v = p
        .by_name("v")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let a = p
        .by_name("a")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let (mut frames, mut audio) = (Vec::new(), Vec::new());
    let mut audio_start = None;
    let (mut v_eos, mut a_eos) = (false, false);
    while !(v_eos && a_eos) {
        if !v_eos {
            match v.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
                Some(s) => {
                    let caps = s.caps().unwrap().structure(0).unwrap().to_owned();
                    let (w, h) = (
                        caps.get::<i32>("width").unwrap() as u32,
                        caps.get::<i32>("height").unwrap() as u32,
                    );
                    let map = s.buffer().unwrap().map_readable().unwrap();
                    let rgb: Vec<u8> = map
                        .chunks_exact(4)
                        .flat_map(|p| [p[0], p[1], p[2]])
                        .collect();
                    let pts = s.buffer().unwrap().pts().unwrap();
                    frames.push((
                        pts,
                        Image {
                            width: w,
                            height: h,
                            channels: 3,
                            data: rgb,
                        },
                    ));
                }
                None => v_eos = v.is_eos(),
            }
        }
        if !a_eos {
            match a.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
                Some(s) => {
                    audio_start.get_or_insert(s.buffer().unwrap().pts().unwrap());
                    let map = s.buffer().unwrap().map_readable().unwrap();
                    audio.extend(
                        map.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
                None => a_eos = a.is_eos(),
            }
        }
    }
    let dur = p
        .query_duration::<gst::ClockTime>()
        .unwrap_or(gst::ClockTime::ZERO);
    p.set_state(gst::State::Null).unwrap();
    Decoded {
        frames,
        audio_start: audio_start.unwrap_or(gst::ClockTime::ZERO),
        audio,
        duration: dur,
    }
}

#[test]
fn render_makes_a_synced_talking_avatar_mp4() {
    let avatar_dir = gstlivetalk::paths::cache_dir().join("avatars/astronaut");
    assert!(
        avatar_dir.join("avatar.json").is_file(),
        "run scripts/setup.sh (it makes the demo avatar)"
    );
    let dir = tempfile::tempdir().unwrap();
    // 1 s of silence, speech, 1 s of silence.
    let speech_wav = dir.path().join("speech.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&speech_wav)
        .arg("One, two, three. Hello there, how are you today?")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let speech = {
        let bytes = std::fs::read(&speech_wav).unwrap();
        let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
        assert_eq!(rate, 22050);
        let pcm: Vec<f32> = bytes[44..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
            .collect();
        pcm
    };
    let mut audio = vec![0.0f32; 22050];
    audio.extend(&speech);
    audio.extend(vec![0.0f32; 22050]);
    let input = dir.path().join("input.wav");
    write_wav(&input, &audio, 22050);
    let seconds = audio.len() as f64 / 22050.0;

    let out = dir.path().join("out.mp4");
    let status = Command::new(env!("CARGO_BIN_EXE_livetalk"))
        .args(["render", "--driver", "lipwarp", "--json", "--audio"])
        .arg(&input)
        .arg("--avatar")
        .arg(&avatar_dir)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(summary["driver"], "lipwarp");

    let report = analyse(&out, &avatar_dir, Some(seconds), true);
    assert!(
        report.offset.abs() <= 1,
        "A/V offset {} frames",
        report.offset
    );
}

/// What the MP4 shows: lengths, mouth motion while silent / speaking, coding noise, the A/V
/// offset in frames. Asserts the checks common to every render.
struct Report {
    offset: i64,
}

/// `seconds`: the audio's length when known; `silence_around`: a second of silence at both ends.
fn analyse(out: &Path, avatar_dir: &Path, seconds: Option<f64>, silence_around: bool) -> Report {
    let Decoded {
        frames,
        audio_start,
        audio: decoded_audio,
        duration,
    } = decode(out);
    // Both streams, lasting as long as the speech.
    let audio_seconds = decoded_audio.len() as f64 / 16000.0;
    let seconds = seconds.unwrap_or(audio_seconds);
    assert!(
        (duration.seconds_f64() - seconds).abs() < 0.1,
        "duration {duration} vs {seconds:.3} s"
    );
    let expected_frames = (seconds * 25.0).ceil() as usize;
    assert!(
        frames.len().abs_diff(expected_frames) <= 1,
        "{} frames, expected {expected_frames}",
        frames.len()
    );
    assert!(
        (audio_seconds - seconds).abs() < 0.1,
        "{audio_seconds} s of audio"
    );

    // Mouth motion per frame: the lower face against the avatar's own frame; the same
    // measure on the upper face (never touched) is the coding noise.
    let avatar = Avatar::load(avatar_dir).unwrap();
    let frames_of_avatar: Vec<Image> = avatar.frames().map(|f| f.to_image()).collect();
    let region_motion = |upper: bool| -> Vec<f64> {
        frames
            .iter()
            .enumerate()
            .map(|(i, (_, f))| {
                let k = mirror_index(avatar.len(), i as u64);
                let fb = avatar.manifest.frames[k].face_box;
                let (x0, x1) = (
                    (fb.x1 + fb.width() / 4) as u32,
                    (fb.x2 - fb.width() / 4) as u32,
                );
                let (y0, y1) = if upper {
                    (fb.y1 as u32, (fb.y1 + fb.height() * 2 / 5) as u32)
                } else {
                    ((fb.y1 + fb.height() * 3 / 5) as u32, fb.y2 as u32)
                };
                gstlivetalk::mouth::region_difference(f, &frames_of_avatar[k], x0, y0, x1, y1)
            })
            .collect()
    };
    let motion = region_motion(false);
    let noise = region_motion(true);
    let noise_max = noise.iter().copied().fold(0.0, f64::max);
    // The audio a player plays while each frame is shown.
    let energy: Vec<f64> = frames
        .iter()
        .map(|(pts, _)| {
            let at = |t: gst::ClockTime| {
                ((t.nseconds() as i128 - audio_start.nseconds() as i128).max(0) * 16_000
                    / 1_000_000_000) as usize
            };
            let (a, b) = (
                at(*pts).min(decoded_audio.len()),
                at(*pts + gst::ClockTime::from_mseconds(40)).min(decoded_audio.len()),
            );
            let s = &decoded_audio[a..b];
            (s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
        })
        .collect();
    // Frames whose audio is clearly speech (or clearly silence).
    let loudest = energy.iter().copied().fold(0.0, f64::max);
    let speaking: Vec<f64> = (0..motion.len())
        .filter(|&i| energy[i] > 0.2 * loudest)
        .map(|i| motion[i])
        .collect();
    let speaking_motion = speaking.iter().sum::<f64>() / speaking.len().max(1) as f64;
    eprintln!(
        "mouth motion while speaking {speaking_motion:.2} over {} frames; coding noise up to {noise_max:.2}",
        speaking.len()
    );
    assert!(speaking.len() > 10, "hardly any speech in the audio");
    assert!(
        speaking_motion > 2.5 * noise_max.max(1.0),
        "the mouth does not move while speaking"
    );
    if silence_around {
        let last = motion.len();
        let still = motion[2..20]
            .iter()
            .chain(&motion[last - 20..last - 2])
            .copied()
            .fold(0.0, f64::max);
        eprintln!("mouth motion in the silences: up to {still:.2}");
        assert!(still < 1.5 * noise_max + 1.0, "the mouth moves in silence");
    }

    // A/V offset at the output: the lag maximising the correlation of audio energy and mouth
    // motion (both mean-removed), in frames.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (me, mm) = (mean(&energy), mean(&motion));
    let corr = |lag: i64| -> f64 {
        (0..energy.len() as i64)
            .filter_map(|i| {
                let j = i + lag;
                (j >= 0 && (j as usize) < motion.len())
                    .then(|| (energy[i as usize] - me) * (motion[j as usize] - mm))
            })
            .sum()
    };
    let best = (-10..=10)
        .max_by(|&a, &b| corr(a).total_cmp(&corr(b)))
        .unwrap();
    eprintln!("A/V offset at the output: {best} frames ({} ms)", best * 40);
    Report { offset: best }
}

/// The demo's path: text through piperttssrc (the default voice of the set-up) to an MP4.
#[test]
fn render_text_with_the_piper_voice() {
    let avatar_dir = gstlivetalk::paths::cache_dir().join("avatars/astronaut");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("text.mp4");
    let o = Command::new(env!("CARGO_BIN_EXE_livetalk"))
        .args([
            "render",
            "--json",
            "--text",
            "Hello! I am a live avatar. My lips follow my voice.",
        ])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["driver"], "lipwarp");
    assert!(summary["seconds"].as_f64().unwrap() > 2.0, "{summary}");
    let report = analyse(&out, &avatar_dir, None, false);
    assert!(
        report.offset.abs() <= 1,
        "A/V offset {} frames",
        report.offset
    );
}
