//! The page webrtcsink's web server serves: `web/` (built into the binary), the gstwebrtc-api
//! script that set-up installed from npm, and a `config.json` telling the page where the API
//! and the signalling server are. Assembled in a temporary folder for the server's lifetime.

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
}
