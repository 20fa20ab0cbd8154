//! `AvatarFrameMeta`: which avatar frame a video buffer belongs to, and whether it speaks.
//!
//! Put on every buffer by the lip drivers (`musetalk`, `lipwarp`) and read by `avatarblend`.
//! It is a GStreamer custom meta (a structure named [`NAME`]) with fields `index` (u64: the
//! avatar frame, already ping-ponged), `frame` (u64: the stream's frame counter) and
//! `speaking` (bool). A GAP buffer carries only this meta: `speaking = false` for an idle
//! frame; `speaking = true` for a speech frame the lip driver skipped (QoS, late), which
//! `avatarblend` shows with the last generated mouth.

pub const NAME: &str = "LivetalkAvatarFrameMeta";

/// The fields of the meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvatarFrame {
    pub index: u64,
    pub frame: u64,
    pub speaking: bool,
}

/// Registers the meta (once per process; plugin_init does it).
pub fn register() {
    if !gst::meta::CustomMeta::is_registered(NAME) {
        gst::meta::CustomMeta::register(NAME, &[]);
    }
}

/// Adds the meta to a buffer, or updates the one it has.
pub fn add(buffer: &mut gst::BufferRef, info: AvatarFrame) {
    let set = |s: &mut gst::StructureRef| {
        s.set("index", info.index);
        s.set("frame", info.frame);
        s.set("speaking", info.speaking);
    };
    if let Ok(meta) = gst::meta::CustomMeta::from_buffer(buffer, NAME) {
        let ptr = &*meta as *const gst::meta::CustomMeta as *mut gst::ffi::GstCustomMeta;
        // SAFETY: the meta belongs to `buffer`, which we hold mutably; CustomMeta is a
        // transparent wrapper of GstCustomMeta, whose structure it owns.
        unsafe {
            let s = gst::ffi::gst_custom_meta_get_structure(ptr);
            set(gst::StructureRef::from_glib_borrow_mut(s));
        }
        return;
    }
    let mut meta =
        gst::meta::CustomMeta::add(buffer, NAME).expect("meta registered by plugin_init");
    set(meta.mut_structure());
}

/// Reads the meta, if the buffer has one.
pub fn get(buffer: &gst::BufferRef) -> Option<AvatarFrame> {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, NAME).ok()?;
    let s = meta.structure();
    Some(AvatarFrame {
        index: s.get("index").ok()?,
        frame: s.get("frame").ok()?,
        speaking: s.get("speaking").ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_replace() {
        gst::init().unwrap();
        register();
        let mut buf = gst::Buffer::new();
        assert_eq!(get(&buf), None);
        let a = AvatarFrame {
            index: 7,
            frame: 42,
            speaking: true,
        };
        add(buf.get_mut().unwrap(), a);
        assert_eq!(get(&buf), Some(a));
        let b = AvatarFrame {
            index: 8,
            frame: 43,
            speaking: false,
        };
        add(buf.get_mut().unwrap(), b);
        assert_eq!(get(&buf), Some(b));
        // Copies carry it.
        let copy = buf.copy();
        assert_eq!(get(&copy), Some(b));
    }
}
