//! Embeds the face detector model that the `rustface` crate ships in its source package
//! (it does not embed it itself): found in cargo's registry sources or a vendor directory.
use std::path::{Path, PathBuf};

const MODEL: &str = "model/seeta_fd_frontal_v1.0.bin";
const CRATE_DIR: &str = "rustface-0.1.7";

fn candidates() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        roots.push(PathBuf::from(home));
    }
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(Path::new(&home).join(".cargo"));
    }
    let mut out = Vec::new();
    for root in roots {
        if let Ok(dirs) = std::fs::read_dir(root.join("registry/src")) {
            for d in dirs.flatten() {
                out.push(d.path().join(CRATE_DIR).join(MODEL));
            }
        }
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    out.push(manifest.join("../vendor").join(CRATE_DIR).join(MODEL));
    out
}

fn main() {
    let found = candidates().into_iter().find(|p| p.is_file());
    let Some(model) = found else {
        panic!(
            "the rustface crate's {MODEL} was not found in cargo's registry sources; run `cargo fetch`"
        );
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("seeta_fd_frontal_v1.0.bin");
    std::fs::copy(&model, &out).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}
