//! Releases the congestion-control elements that webrtcsink leaks.
//!
//! gst-plugin-webrtc 0.15.4's webrtcsink answers webrtcbin's `request-aux-sender` (whose
//! return is "transfer floating") with a plain strong reference to its `rtpgccbwe`; webrtcbin
//! sinks it, so one reference is owned by nobody and every consumer session leaves an
//! `rtpgccbwe` with its two pads behind (GStreamer's leaks tracer shows one per session; see
//! `serve_browser.rs`). Found with gst-plugin-webrtc 0.15.4 on GStreamer 1.22.
//!
//! Each `rtpgccbwe` that appears in a session's webrtcbin is watched (weakly) together with
//! that webrtcbin and its webrtcsink. Once both of those are finalized, every legitimate
//! holder is gone (webrtcsink's session keeps one reference, webrtcbin's signal closure
//! another): a reference still left beyond ours is the leaked one, and it is dropped. If a
//! later webrtcsink stops leaking, the element is simply gone by then and nothing happens.

use std::sync::Mutex;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;

struct Watched {
    bwe: glib::WeakRef<gst::Element>,
    webrtcbin: glib::WeakRef<gst::Element>,
    webrtcsink: glib::WeakRef<gst::Element>,
}

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());

/// Watches the `rtpgccbwe` elements a consumer's webrtcbin gets.
pub fn watch(webrtcsink: &gst::Element, webrtcbin: &gst::Element) {
    let (ws, wb) = (webrtcsink.downgrade(), webrtcbin.downgrade());
    webrtcbin.connect("deep-element-added", false, move |args| {
        if let Ok(e) = args[2].get::<gst::Element>()
            && e.factory().is_some_and(|f| f.name() == "rtpgccbwe")
        {
            WATCHED.lock().unwrap().push(Watched {
                bwe: e.downgrade(),
                webrtcbin: wb.clone(),
                webrtcsink: ws.clone(),
            });
        }
        None
    });
}

/// One pass: drops the leaked reference of every watched element whose webrtcbin and
/// webrtcsink are gone; forgets the elements that were freed. Returns how many it released.
pub fn reap() -> usize {
    let mut released = 0;
    WATCHED.lock().unwrap().retain(|w| {
        let Some(bwe) = w.bwe.upgrade() else {
            return false;
        };
        if w.webrtcbin.upgrade().is_some() || w.webrtcsink.upgrade().is_some() {
            return true;
        }
        // Ours plus exactly one: the reference nobody owns.
        if bwe.parent().is_none() && bwe.ref_count() == 2 {
            let _ = bwe.set_state(gst::State::Null);
            // SAFETY: the element is alive (we hold a reference) and the reference released
            // here is the orphaned one: its owners (webrtcbin, webrtcsink) are finalized and
            // no bin holds it.
            unsafe { glib::gobject_ffi::g_object_unref(bwe.as_ptr() as *mut _) };
            released += 1;
            return false;
        }
        // Someone else still holds it: look again later.
        true
    });
    released
}

/// Reaps every two seconds on a thread of its own.
pub fn start_reaper() {
    std::thread::Builder::new()
        .name("gcc-reaper".into())
        .spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(2));
                reap();
            }
        })
        .expect("spawning the reaper thread");
}
