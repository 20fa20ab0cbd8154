//! When no ONNX Runtime library can be found, the error says where it looked and how to fix
//! it. Its own test binary: the runtime is loaded once per process.

use std::path::Path;

#[test]
fn missing_runtime_library_error_lists_places_and_fix() {
    let cache = tempfile::tempdir().unwrap();
    // SAFETY: this test binary has one test and no other threads reading the environment.
    unsafe {
        std::env::set_var("LIVETALK_CACHE", cache.path());
        std::env::remove_var("ORT_DYLIB_PATH");
    }
    if libloading_finds_system_onnxruntime() {
        eprintln!("a system libonnxruntime.so exists; this test needs a machine without one");
        return;
    }
    let bogus = cache.path().join("not-a-library.so");
    std::fs::write(&bogus, b"hello").unwrap();
    let err = match gstlivetalk::inference::runtime(Some(&bogus)) {
        Ok(_) => panic!("a runtime loaded from nowhere"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("ONNX Runtime library not found"), "{err}");
    assert!(err.contains("(element property)"), "{err}");
    assert!(
        err.contains(&format!(
            "{} (set-up cache): no such file",
            cache
                .path()
                .join("onnxruntime/libonnxruntime.so.1.31.1")
                .display()
        )),
        "{err}"
    );
    assert!(err.contains("scripts/setup.sh"), "{err}");
    assert!(err.contains("ORT_DYLIB_PATH"), "{err}");

    // Pointing ORT_DYLIB_PATH at the real library then works: a failed search is not sticky.
    let real = Path::new(&std::env::var("HOME").unwrap())
        .join(".cache/livetalk/onnxruntime/libonnxruntime.so.1.31.1");
    let real = std::env::var_os("LIVETALK_TEST_ORT")
        .map(Into::into)
        .unwrap_or(real);
    if real.exists() {
        unsafe { std::env::set_var("ORT_DYLIB_PATH", &real) };
        let rt = gstlivetalk::inference::runtime(None).unwrap();
        assert_eq!(rt.library, real);
    }
}

fn libloading_finds_system_onnxruntime() -> bool {
    [
        "/usr/lib/libonnxruntime.so",
        "/usr/local/lib/libonnxruntime.so",
        "/usr/lib/x86_64-linux-gnu/libonnxruntime.so",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}
