//! The page webrtcsink's web server serves: `web/` (built into the binary), the gstwebrtc-api
//! script that set-up installed from npm, janus.js and its webrtc-adapter (npm
//! `janus-gateway`, for the page's Janus viewer mode; left out where set-up has not installed
//! them), and a `config.json` telling the page where the API, the signalling server and Janus
//! are. Assembled in a temporary folder for the server's lifetime.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Config;

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const APP_JS: &str = include_str!("../../../web/app.js");
const STYLE_CSS: &str = include_str!("../../../web/style.css");

pub struct PageDir {
    dir: tempfile::TempDir,
}

/// The gstwebrtc-api bundle: the given file, else the set-up cache's npm install.
pub fn find_gstwebrtc_api(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.is_file(), "{}: no such file", p.display());
        return Ok(p.to_path_buf());
    }
    let dist = gstlivetalk::paths::cache_dir().join("web/node_modules/gstwebrtc-api/dist");
    let found = std::fs::read_dir(&dist).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with(".min.js"))
    });
    found.with_context(|| {
        format!(
            "no gstwebrtc-api in {} (run scripts/setup.sh, or pass --gstwebrtc-api)",
            dist.display()
        )
    })
}

/// janus.js and the webrtc-adapter script it expects as the global `adapter`, from the set-up
/// cache's npm install of `janus-gateway` (its pinned adapter when npm nested it, else the
/// shared one).
pub fn find_janus_js() -> Option<(PathBuf, PathBuf)> {
    let modules = gstlivetalk::paths::cache_dir().join("web/node_modules");
    let janus = modules.join("janus-gateway/src/janus.js");
    let adapter = [
        modules.join("janus-gateway/node_modules/webrtc-adapter/out/adapter.js"),
        modules.join("webrtc-adapter/out/adapter.js"),
    ]
    .into_iter()
    .find(|p| p.is_file())?;
    janus.is_file().then_some((janus, adapter))
}

/// What the page needs to reach Janus: the endpoint serve publishes to, and whether its host is
/// this machine's loopback (then a browser elsewhere uses the page's own host name, same port
/// and path: Janus must listen there too).
fn janus_page_config(endpoint: &str, room: u64) -> serde_json::Value {
    let (host, port) = super::janus::parse_endpoint(endpoint).unwrap_or_default();
    let rest = endpoint.strip_prefix("ws://").unwrap_or(endpoint);
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback());
    serde_json::json!({
        "url": endpoint,
        "port": port,
        "path": path,
        "loopback": loopback,
        "room": room,
    })
}

impl PageDir {
    pub fn assemble(cfg: &Config, api_js: Option<&Path>) -> anyhow::Result<PageDir> {
        let api_js = find_gstwebrtc_api(api_js)?;
        let dir = tempfile::Builder::new()
            .prefix("livetalk-page-")
            .tempdir()?;
        std::fs::write(dir.path().join("index.html"), INDEX_HTML)?;
        std::fs::write(dir.path().join("app.js"), APP_JS)?;
        std::fs::write(dir.path().join("style.css"), STYLE_CSS)?;
        std::fs::copy(&api_js, dir.path().join("gstwebrtc-api.min.js"))
            .with_context(|| format!("copying {}", api_js.display()))?;
        let janus_js = find_janus_js();
        if let Some((janus, adapter)) = &janus_js {
            std::fs::copy(janus, dir.path().join("janus.js"))
                .with_context(|| format!("copying {}", janus.display()))?;
            std::fs::copy(adapter, dir.path().join("adapter.js"))
                .with_context(|| format!("copying {}", adapter.display()))?;
        }
        let mut ice = Vec::new();
        if let Some(s) = &cfg.stun {
            ice.push(serde_json::json!({"urls": s.replacen("stun://", "stun:", 1)}));
        }
        for t in &cfg.turn {
            if let Some(server) = turn_ice_server(t) {
                ice.push(server);
            }
        }
        let config = serde_json::json!({
            "api_port": cfg.port,
            "signalling_port": cfg.signalling_port,
            "ice_servers": ice,
            "default_avatar": cfg.default_avatar,
            "token_required": cfg.token.is_some(),
            "janus": cfg.janus.as_ref().map(|j| janus_page_config(&j.endpoint, j.room)),
            "janus_js": janus_js.is_some(),
        });
        std::fs::write(dir.path().join("config.json"), config.to_string())?;
        Ok(PageDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// `turn://user:password@host:port` as a browser's RTCIceServer.
fn turn_ice_server(t: &str) -> Option<serde_json::Value> {
    let rest = t
        .strip_prefix("turn://")
        .or_else(|| t.strip_prefix("turns://"))?;
    let scheme = if t.starts_with("turns") {
        "turns"
    } else {
        "turn"
    };
    let (cred, hostport) = rest.rsplit_once('@')?;
    let (user, pass) = cred.split_once(':')?;
    Some(serde_json::json!({
        "urls": format!("{scheme}:{hostport}"),
        "username": user,
        "credential": pass,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn turn_urls_for_the_browser() {
        let v = super::turn_ice_server("turn://ann:s3cret@turn.example.org:3478").unwrap();
        assert_eq!(v["urls"], "turn:turn.example.org:3478");
        assert_eq!(v["username"], "ann");
        assert_eq!(v["credential"], "s3cret");
        assert!(super::turn_ice_server("turn://nohost").is_none());
    }

    #[test]
    fn janus_endpoint_for_the_page() {
        let v = super::janus_page_config("ws://127.0.0.1:8188", 7);
        assert_eq!(v["loopback"], true);
        assert_eq!(
            (v["port"].as_u64(), v["path"].as_str()),
            (Some(8188), Some(""))
        );
        assert_eq!(v["room"], 7);
        let v = super::janus_page_config("ws://janus.example.org:8989/janus", 1234);
        assert_eq!(v["loopback"], false);
        assert_eq!(v["url"], "ws://janus.example.org:8989/janus");
        assert_eq!(
            (v["port"].as_u64(), v["path"].as_str()),
            (Some(8989), Some("/janus"))
        );
        assert_eq!(
            super::janus_page_config("ws://localhost:1", 1)["loopback"],
            true
        );
    }
}
