//! The custom events and messages every livetalk element, the server and the page share.
//!
//! - `livetalk-interrupt`: serialized downstream event. Drop pending speech; what was queued
//!   before it becomes idle (GAP) output.
//! - `livetalk-speech`: element message on the bus and serialized downstream event at the
//!   start and end of each sentence: `status` ("start" | "end"), `text`, `running-time`.
//! - `livetalk-word`: a word boundary: `text`, `offset` and `duration` (clock time from the
//!   sentence start), `running-time`.

pub const INTERRUPT: &str = "livetalk-interrupt";
pub const SPEECH: &str = "livetalk-speech";
pub const WORD: &str = "livetalk-word";

/// The `livetalk-interrupt` event.
pub fn interrupt_event() -> gst::Event {
    gst::event::CustomDownstream::new(gst::Structure::new_empty(INTERRUPT))
}

/// Whether an event is `livetalk-interrupt`.
pub fn is_interrupt(event: &gst::EventRef) -> bool {
    event.type_() == gst::EventType::CustomDownstream
        && event.structure().is_some_and(|s| s.name() == INTERRUPT)
}
