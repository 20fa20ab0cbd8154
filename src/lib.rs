// SPDX-License-Identifier: MPL-2.0
#![allow(clippy::non_send_fields_in_send_ty, unused_doc_comments)]

//! GStreamer elements for a live, lip-synced talking avatar.
//!
//! The pure parts (mel spectrogram, feature windows, avatar directory, model contracts) are
//! plain Rust modules with their own tests; the elements are thin glue around them.

use gst::glib;

pub mod actions;
pub mod asr;
pub mod audio_intake;
pub mod audioclock;
pub mod avatar;
mod avatarbin;
mod avatarblend;
pub mod blend;
mod edgettssrc;
pub mod enums;
pub mod events;
pub mod features;
pub mod imageops;
pub mod inference;
pub mod lipsync;
mod lipwarp;
pub mod mel;
pub mod meta;
pub mod mouth;
mod musetalk;
pub mod npy;
pub mod paths;
mod piperttssrc;
mod silerovad;
pub mod tts;
mod ttsbase;
mod whisperasr;
mod whisperfeat;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    meta::register();
    whisperfeat::register(plugin)?;
    lipwarp::register(plugin)?;
    musetalk::register(plugin)?;
    avatarblend::register(plugin)?;
    edgettssrc::register(plugin)?;
    piperttssrc::register(plugin)?;
    avatarbin::register(plugin)?;
    enums::mark_as_plugin_api();
    silerovad::register(plugin)?;
    whisperasr::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    livetalk,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
