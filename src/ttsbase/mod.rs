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
//! `flush()` (drop queued and in-flight speech, send `livetalk-interrupt` downstream).
//!
//! A subclass creates its [`Engine`] in `BaseSrcImpl::start`, hands it over with
//! [`TtsSrcExt::set_engine`] and chains up.

use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::tts::Engine;

mod imp;

glib::wrapper! {
    pub struct TtsSrc(ObjectSubclass<imp::TtsSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// What a subclass of [`TtsSrc`] implements (nothing beyond `PushSrcImpl`: it hands its
/// engine over in `start`).
pub trait TtsSrcImpl: PushSrcImpl + ObjectSubclass<Type: IsA<TtsSrc>> {}

unsafe impl<T: TtsSrcImpl> IsSubclassable<T> for TtsSrc {}

pub trait TtsSrcExt: IsA<TtsSrc> + 'static {
    /// The engine the next stream (after `start`) uses.
    fn set_engine(&self, engine: Arc<dyn Engine>) {
        self.upcast_ref::<TtsSrc>().imp().set_engine(engine);
    }
}

impl<O: IsA<TtsSrc>> TtsSrcExt for O {}
