//! `--whip URL [--whip-token T]`: a session pushed to a WHIP endpoint (an SFU or media server
//! such as SRS, as LiveTalking's `rtcpush` does) by gst-plugins-rs' `whipclientsink`, for the
//! server's lifetime, like `--rtmp`. whipclientsink encodes as webrtcsink does (VP8 + Opus
//! here); an endpoint that refuses the push ends the session with the element's error.

use gst::glib;
use gst::prelude::*;

use super::Config;

/// The session's whipclientsink, configured from `--whip`, `--whip-token`, `--stun`,
/// `--turn` and `--congestion-control`.
pub fn make_sink(cfg: &Config, url: &str, token: Option<&str>) -> anyhow::Result<gst::Element> {
    let sink = super::session::webrtc_sink(
        cfg,
        "whipclientsink",
        "whip",
        "gst-plugin-webrtc's whip feature",
    )?;
    let signaller = sink.property::<glib::Object>("signaller");
    signaller.set_property("whip-endpoint", url);
    if let Some(t) = token {
        signaller.set_property("auth-token", t);
    }
    if is_loopback_url(url) {
        // As for webrtcsink's peers (FACTS): to an endpoint on loopback, ICE on loopback.
        sink.connect("consumer-added", false, |args| {
            if let Ok(webrtcbin) = args[2].get::<gst::Element>() {
                let agent = webrtcbin.property::<glib::Object>("ice-agent");
                agent.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
            }
            None
        });
    }
    Ok(sink)
}

/// Whether a URL's host is a loopback address (`127.x.x.x`, `[::1]`, `localhost`).
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_endpoints() {
        use super::is_loopback_url as l;
        assert!(l("http://127.0.0.1:8080/whip/endpoint"));
        assert!(l("http://127.0.0.2/whip"));
        assert!(l("https://localhost/rtc/v1/whip/?app=live&stream=avatar"));
        assert!(l("http://[::1]:1985/whip"));
        assert!(l("http://user:pw@127.0.0.1:1985/whip"));
        assert!(!l("http://192.168.1.20:1985/rtc/v1/whip/?app=live"));
        assert!(!l("https://srs.example.com/whip"));
        assert!(!l("http://[2001:db8::1]:80/whip"));
        assert!(!l("http://127.0.0.1.example.com/whip"));
    }
}
