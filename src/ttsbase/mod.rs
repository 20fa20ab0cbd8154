// SPDX-License-Identifier: MPL-2.0
//! The base shared by `edgettssrc` and `piperttssrc`: an abstract live push source that
//! queues text, cuts streamed text into sentences, synthesizes sentence n+1 on its own thread
//! while sentence n plays, produces real-time S16LE mono audio (GAP silence while idle),
//! interrupts at once on `flush`, and tells the bus and downstream when sentences and words
//! start and end.
//!
//! Properties: `text` (spoken at start), `is-live` (false: speak the queue as fast as
//! possible, then EOS), `speaking` (read-only, notifies).
//! Action signals: `speak(text)`, `push-fragment(text)` (a piece of a streamed answer, cut at
//! punctuation as LiveTalking does), `end-fragments()` (speak what is left of the stream),
//! `flush()` (drop queued and in-flight speech, send `livetalk-interrupt` downstream),
//! `push-audio(label, bytes)` (S16LE mono audio at the source's output rate, played as it is
//! in queue order, with speech events carrying `label`; returns false for empty audio).
//!
//! The playout itself (queue, sentences, flush, what plays in the next buffer) is the pure
//! state machine [`crate::tts::playout`]; this element feeds it, runs the engine on its
//! synthesis thread (joined on stop), and turns its events into GStreamer events and
//! messages.
//!
//! One name: folder `ttsbase`, type [`TtsBaseSrc`], debug category `ttsbase`, GType
//! `GstTtsBaseSrc` (abstract).
//!
//! A subclass creates its [`Engine`] in `BaseSrcImpl::start`, hands it over with
//! [`TtsBaseSrcExt::set_engine`] and chains up.

use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::tts::Engine;

mod imp;

glib::wrapper! {
    pub struct TtsBaseSrc(ObjectSubclass<imp::TtsBaseSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// What a subclass of [`TtsBaseSrc`] implements (nothing beyond `PushSrcImpl`: it hands its
/// engine over in `start`).
pub trait TtsBaseSrcImpl: PushSrcImpl + ObjectSubclass<Type: IsA<TtsBaseSrc>> {}

unsafe impl<T: TtsBaseSrcImpl> IsSubclassable<T> for TtsBaseSrc {}

pub trait TtsBaseSrcExt: IsA<TtsBaseSrc> + 'static {
    /// The engine the next stream (after `start`) uses.
    fn set_engine(&self, engine: Arc<dyn Engine>) {
        self.upcast_ref::<TtsBaseSrc>().imp().set_engine(engine);
    }
}

impl<O: IsA<TtsBaseSrc>> TtsBaseSrcExt for O {}

#[cfg(test)]
mod tests;
