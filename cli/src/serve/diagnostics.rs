//! What the server knows about its own health: threads and RSS from /proc, and the net live
//! GStreamer objects from the leaks tracer (`GST_TRACERS=leaks`), for `/health` and the soak
//! tests.

use gst::prelude::*;
use serde_json::{Value, json};

/// (threads, RSS in kB) of this process.
pub fn proc_status() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

/// GStreamer's leaks tracer, when the process runs with `GST_TRACERS=leaks`.
fn leaks_tracer() -> Option<gst::Tracer> {
    gst::active_tracers()
        .into_iter()
        .find(|t| t.type_().name() == "GstLeaksTracer")
}

/// Starts the leaks tracer's activity tracking (a no-op without the tracer), before the first
/// session. Only the first call does anything: GStreamer 1.22's tracer returns from a second
/// start with its lock still held, and the next object created then hangs.
pub fn start_object_tracking() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        if let Some(t) = leaks_tracer() {
            t.emit_by_name::<()>("activity-start-tracking", &[]);
        }
    });
}

/// Net GStreamer objects created since [`start_object_tracking`], by kind, from the leaks
/// tracer's checkpoints (type names and addresses only: no object is touched). A measure of
/// what sessions leave behind that, unlike RSS, the allocator's caching does not blur.
/// `null` without the tracer.
pub fn live_objects() -> Value {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static NET: Mutex<BTreeMap<(&'static str, String), i64>> = Mutex::new(BTreeMap::new());
    let Some(tracer) = leaks_tracer() else {
        return Value::Null;
    };
    let checkpoint = tracer.emit_by_name::<gst::Structure>("activity-get-checkpoint", &[]);
    let kind = |name: &str| -> &'static str {
        let Some(t) = gst::glib::Type::from_name(name) else {
            return "other";
        };
        if t.is_a(gst::Element::static_type()) {
            "elements"
        } else if t.is_a(gst::Pad::static_type()) {
            "pads"
        } else if t.is_a(gst::Object::static_type()) {
            "other_objects"
        } else if t.is_a(gst::Buffer::static_type()) {
            "buffers"
        } else {
            "other_miniobjects"
        }
    };
    let mut net = NET.lock().unwrap();
    for (field, sign) in [("objects-created-list", 1), ("objects-removed-list", -1)] {
        let Ok(list) = checkpoint.get::<gst::List>(field) else {
            continue;
        };
        for v in list.iter() {
            if let Ok(entry) = v.get::<&gst::StructureRef>()
                && let Ok(name) = entry.get::<&str>("type-name")
            {
                *net.entry((kind(name), name.to_string())).or_default() += sign;
            }
        }
    }
    let mut out = serde_json::Map::new();
    let mut elements = serde_json::Map::new();
    for k in [
        "elements",
        "pads",
        "other_objects",
        "buffers",
        "other_miniobjects",
    ] {
        let total: i64 = net
            .iter()
            .filter(|((kk, _), _)| *kk == k)
            .map(|(_, n)| n)
            .sum();
        out.insert(k.into(), json!(total));
    }
    // Element types by net count, so that a leak says what leaks.
    for ((k, name), n) in net.iter() {
        if *k == "elements" && *n != 0 {
            elements.insert(name.clone(), json!(n));
        }
    }
    out.insert("element_types".into(), Value::Object(elements));
    Value::Object(out)
}
