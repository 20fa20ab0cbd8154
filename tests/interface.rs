//! The plugin's whole interface, as users and applications see it: every element's metadata,
//! pad templates with their caps, properties (type, default, range, flags, enum values) and
//! signals, written to `docs/plugins/livetalk.json` (the idea of gst-plugins-rs'
//! `gst_plugins_cache.json`) and, as property tables, to `docs/elements.md`. The test fails
//! when the code and the checked-in files disagree; after an intended change, regenerate
//! both with `LIVETALK_UPDATE_INTERFACE=1 cargo test --test interface` and commit them.

mod common;

use std::path::{Path, PathBuf};

use gst::glib;
use gst::glib::translate::{FromGlib, IntoGlib};
use gst::prelude::*;
use serde_json::{Map, Value, json};

/// GObject/GStreamer base classes: what they define is not our interface.
const CORE_TYPES: &[&str] = &[
    "GObject",
    "GInitiallyUnowned",
    "GstObject",
    "GstElement",
    "GstBin",
    "GstBaseSrc",
    "GstPushSrc",
    "GstBaseTransform",
    "GstBaseSink",
    "GstAggregator",
    "GstAudioFilter",
    "GstVideoFilter",
];

fn is_core(t: glib::Type) -> bool {
    CORE_TYPES.contains(&t.name())
}

/// Machine-specific paths (the set-up cache) as a placeholder.
fn portable(s: &str) -> String {
    let cache = gstlivetalk::paths::cache_dir().display().to_string();
    s.replace(&cache, "$LIVETALK_CACHE")
}

fn flags(f: glib::ParamFlags) -> Vec<&'static str> {
    let mut v = Vec::new();
    for (bit, name) in [
        (glib::ParamFlags::READABLE, "readable"),
        (glib::ParamFlags::WRITABLE, "writable"),
        (glib::ParamFlags::CONSTRUCT, "construct"),
        (glib::ParamFlags::CONSTRUCT_ONLY, "construct-only"),
    ] {
        if f.contains(bit) {
            v.push(name);
        }
    }
    // GStreamer's own flags (gst/gstparamspecs.h).
    for (shift, name) in [
        (9, "controllable"),
        (10, "mutable-ready"),
        (11, "mutable-paused"),
        (12, "mutable-playing"),
    ] {
        if f.bits() & (1 << shift) != 0 {
            v.push(name);
        }
    }
    v
}

fn value_json(v: &glib::Value) -> Value {
    if let Ok(s) = v.get::<Option<String>>() {
        return s.map_or(Value::Null, |s| Value::String(portable(&s)));
    }
    if let Ok(b) = v.get::<bool>() {
        return json!(b);
    }
    if let Some(e) = glib::EnumValue::from_value(v) {
        return json!(e.1.nick());
    }
    macro_rules! num {
        ($($t:ty),*) => {$(if let Ok(n) = v.get::<$t>() { return json!(n); })*};
    }
    num!(u32, i32, u64, i64, f64, f32);
    if let Ok(f) = v.get::<gst::Fraction>() {
        return json!(format!("{}/{}", f.numer(), f.denom()));
    }
    Value::Null
}

fn property_json(p: &glib::ParamSpec) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!(p.value_type().name()));
    o.insert("blurb".into(), json!(p.blurb().map(portable)));
    o.insert("flags".into(), json!(flags(p.flags())));
    if p.flags().contains(glib::ParamFlags::READABLE) {
        o.insert("default".into(), value_json(p.default_value()));
    }
    macro_rules! range {
        ($($t:ty),*) => {$(
            if let Some(r) = p.downcast_ref::<$t>() {
                o.insert("min".into(), json!(r.minimum()));
                o.insert("max".into(), json!(r.maximum()));
            }
        )*};
    }
    range!(
        glib::ParamSpecUInt,
        glib::ParamSpecInt,
        glib::ParamSpecUInt64,
        glib::ParamSpecInt64,
        glib::ParamSpecDouble,
        glib::ParamSpecFloat
    );
    if let Some(r) = p.downcast_ref::<gst::ParamSpecFraction>() {
        let f = |f: gst::Fraction| format!("{}/{}", f.numer(), f.denom());
        o.insert("min".into(), json!(f(r.minimum())));
        o.insert("max".into(), json!(f(r.maximum())));
    }
    if let Some(e) = p.downcast_ref::<glib::ParamSpecEnum>() {
        let values: Vec<Value> = e
            .enum_class()
            .values()
            .iter()
            .map(|v| json!({"nick": v.nick(), "description": v.name()}))
            .collect();
        o.insert("values".into(), json!(values));
    }
    Value::Object(o)
}

/// The signals a type and its non-core ancestors define.
fn signals_json(mut t: glib::Type) -> Value {
    let mut out = Map::new();
    while !is_core(t) && t != glib::Type::INVALID {
        let mut n = 0u32;
        // SAFETY: g_signal_list_ids returns a newly allocated array of `n` ids for a
        // registered instantiatable type; g_signal_query fills the struct for a valid id.
        unsafe {
            let ids = glib::gobject_ffi::g_signal_list_ids(t.into_glib(), &mut n);
            for i in 0..n as usize {
                let mut q = std::mem::zeroed::<glib::gobject_ffi::GSignalQuery>();
                glib::gobject_ffi::g_signal_query(*ids.add(i), &mut q);
                let name = std::ffi::CStr::from_ptr(q.signal_name)
                    .to_string_lossy()
                    .to_string();
                let params: Vec<String> = (0..q.n_params as usize)
                    .map(|k| {
                        glib::Type::from_glib(*q.param_types.add(k) & !1)
                            .name()
                            .to_string()
                    })
                    .collect();
                let ret = glib::Type::from_glib(q.return_type & !1).name().to_string();
                let action = q.signal_flags & glib::gobject_ffi::G_SIGNAL_ACTION != 0;
                out.insert(
                    name,
                    json!({"params": params, "return": ret, "action": action}),
                );
            }
            glib::ffi::g_free(ids as *mut _);
        }
        t = t.parent().unwrap_or(glib::Type::INVALID);
    }
    Value::Object(out)
}

fn element_json(factory: &gst::ElementFactory) -> Value {
    let e = factory.create().build().unwrap();
    let mut props = Map::new();
    for p in e.list_properties() {
        if !is_core(p.owner_type()) {
            props.insert(p.name().to_string(), property_json(&p));
        }
    }
    let pads: Map<String, Value> = factory
        .static_pad_templates()
        .iter()
        .map(|t| {
            (
                t.name_template().to_string(),
                json!({
                    "direction": format!("{:?}", t.direction()).to_lowercase(),
                    "presence": format!("{:?}", t.presence()).to_lowercase(),
                    "caps": t.caps().to_string(),
                }),
            )
        })
        .collect();
    let meta = |k: &str| factory.metadata(k).map(str::to_string);
    json!({
        "long-name": meta("long-name"),
        "klass": meta("klass"),
        "description": meta("description"),
        "hierarchy": hierarchy(e.type_()),
        "pads": pads,
        "properties": props,
        "signals": signals_json(e.type_()),
    })
}

fn hierarchy(mut t: glib::Type) -> Vec<String> {
    let mut v = Vec::new();
    while t != glib::Type::INVALID {
        v.push(t.name().to_string());
        t = t.parent().unwrap_or(glib::Type::INVALID);
    }
    v
}

fn interface() -> Value {
    common::init();
    let mut elements = Map::new();
    let mut features: Vec<gst::PluginFeature> = gst::Registry::get()
        .features_by_plugin("livetalk")
        .into_iter()
        .collect();
    features.sort_by_key(|f| f.name().to_string());
    for f in features {
        if let Ok(factory) = f.downcast::<gst::ElementFactory>() {
            elements.insert(factory.name().to_string(), element_json(&factory));
        }
    }
    json!({"plugin": "livetalk", "elements": elements})
}

/// The property tables of `docs/elements.md`, made from the interface.
fn markdown(iface: &Value) -> String {
    let mut md = String::from(
        "# livetalk elements: properties and signals\n\n\
         Generated from the code by `tests/interface.rs` (`LIVETALK_UPDATE_INTERFACE=1 cargo test \
         --test interface`); the test fails when this file and the code disagree. \
         `$LIVETALK_CACHE` is the set-up cache. The full interface (pads, caps, flags) is \
         `docs/plugins/livetalk.json`.\n",
    );
    for (name, e) in iface["elements"].as_object().unwrap() {
        md.push_str(&format!(
            "\n## {name}\n\n{}\n\n| property | type | default | range / values | |\n|---|---|---|---|---|\n",
            e["description"].as_str().unwrap_or_default()
        ));
        for (p, d) in e["properties"].as_object().unwrap() {
            let range = match (&d["min"], &d["max"], &d["values"]) {
                (_, _, Value::Array(v)) => v
                    .iter()
                    .map(|x| x["nick"].as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                (Value::Null, _, _) => String::new(),
                (a, b, _) => format!("{a} .. {b}").replace('"', ""),
            };
            let flags = d["flags"].as_array().unwrap();
            let ro = if flags.iter().any(|f| f == "writable") {
                ""
            } else {
                " (read-only)"
            };
            let default = match &d["default"] {
                Value::Null => String::new(),
                v => format!("`{}`", v.to_string().trim_matches('"')),
            };
            md.push_str(&format!(
                "| `{p}` | {} | {default} | {range} | {}{ro} |\n",
                d["type"].as_str().unwrap_or_default(),
                d["blurb"]
                    .as_str()
                    .unwrap_or_default()
                    .replace('|', "\\|")
                    .replace('\n', " ")
            ));
        }
        let signals = e["signals"].as_object().unwrap();
        if !signals.is_empty() {
            md.push_str("\n| signal | parameters | returns | action |\n|---|---|---|---|\n");
            for (s, d) in signals {
                let params: Vec<&str> = d["params"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|p| p.as_str())
                    .collect();
                md.push_str(&format!(
                    "| `{s}` | {} | {} | {} |\n",
                    params.join(", "),
                    d["return"].as_str().unwrap_or_default(),
                    if d["action"] == true { "yes" } else { "" }
                ));
            }
        }
    }
    md
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn the_checked_in_interface_matches_the_code() {
    let iface = interface();
    let json_text = serde_json::to_string_pretty(&iface).unwrap() + "\n";
    let md = markdown(&iface);
    let files = [
        (repo_file("docs/plugins/livetalk.json"), json_text),
        (repo_file("docs/elements.md"), md),
    ];
    if std::env::var_os("LIVETALK_UPDATE_INTERFACE").is_some() {
        for (path, text) in &files {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        return;
    }
    for (path, text) in &files {
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        if &on_disk != text {
            let first = on_disk
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(on_disk.lines().count().min(text.lines().count()));
            panic!(
                "{} disagrees with the code from line {}:\n  file: {:?}\n  code: {:?}\n\
                 after an intended interface change: LIVETALK_UPDATE_INTERFACE=1 cargo test \
                 --test interface, and commit the files",
                path.display(),
                first + 1,
                on_disk.lines().nth(first),
                text.lines().nth(first)
            );
        }
    }
}

#[test]
fn every_element_is_in_the_interface_with_its_pads() {
    let iface = interface();
    let elements = iface["elements"].as_object().unwrap();
    for name in [
        "avatarbin",
        "avatarblend",
        "edgettssrc",
        "lipwarp",
        "musetalk",
        "piperttssrc",
        "whisperfeat",
    ] {
        let e = &elements[name];
        assert!(e.is_object(), "{name} missing");
        assert!(
            !e["pads"].as_object().unwrap().is_empty(),
            "{name} has no pads"
        );
    }
    // Enums are recorded with their values.
    let driver = &elements["avatarbin"]["properties"]["driver"];
    let nicks: Vec<&str> = driver["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["nick"].as_str().unwrap())
        .collect();
    assert_eq!(nicks, ["auto", "musetalk", "lipwarp"]);
    assert_eq!(driver["default"], "auto");
    // Every element that runs models has the same device enum (so "npu" or "cuda:x" cannot
    // even be set) and a GPU number.
    for (name, e) in elements {
        let props = e["properties"].as_object().unwrap();
        if let Some(d) = props.get("device") {
            assert_eq!(d["type"], "GstLivetalkDevice", "{name}");
            let nicks: Vec<&str> = d["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["nick"].as_str().unwrap())
                .collect();
            assert_eq!(nicks, ["cpu", "cuda", "tensorrt"], "{name}");
            assert!(props.contains_key("device-id"), "{name}");
        }
        if let Some(p) = props.get("precision") {
            assert_eq!(p["type"], "GstLivetalkPrecision", "{name}");
        }
    }
}
