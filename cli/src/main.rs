//! The `livetalk` command.

mod bench;
mod bench_sessions;
mod bench_soak;
mod features;
mod import;
mod launch;
mod prepare;
mod progress;
mod render;
mod serve;
mod transcribe;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "livetalk",
    version,
    about = "Live lip-synced talking avatars on GStreamer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dump whisper log-mel or per-frame features of an audio file to .npy (for debugging).
    Features(features::Args),
    /// Benchmarks: whisper front end, encoder and whisperfeat against their peers; live
    /// sessions at 25 fps.
    Bench(bench::Args),
    /// Make an avatar directory (format v1) from a video or a still image.
    PrepareAvatar(prepare::Args),
    /// Import a MuseTalk / LiveTalking avatar folder (full_imgs, coords.pkl, latents.pt, ...).
    ImportAvatar(import::Args),
    /// Render text or an audio file to a talking-avatar MP4 (offline).
    Render(render::Args),
    /// Serve live avatars: WebRTC (page + signalling), RTMP, an HTTP API, many sessions.
    Serve(Box<serve::Args>),
    /// Print an audio file's transcript (Silero VAD + whisper, as voice sessions hear it).
    Transcribe(transcribe::Args),
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = gst::init() {
        eprintln!("livetalk: cannot initialise GStreamer: {e}");
        std::process::exit(1);
    }
    if let Err(e) = gstlivetalk::plugin_register_static() {
        eprintln!("livetalk: cannot register the plugin: {e}");
        std::process::exit(1);
    }
    let result = match cli.command {
        Command::Features(a) => features::run(a),
        Command::Bench(a) => bench::run(a),
        Command::PrepareAvatar(a) => prepare::run(a),
        Command::Render(a) => render::run(a),
        Command::ImportAvatar(a) => import::run(a),
        Command::Serve(a) => serve::run(*a),
        Command::Transcribe(a) => transcribe::run(a),
    };
    if let Err(e) = result {
        eprintln!("livetalk: {e:#}");
        std::process::exit(1);
    }
}
