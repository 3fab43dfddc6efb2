//! Where `cargo build --profile filter --target wasm32-wasip2` puts filter components, for
//! tests and tools that load the workspace's own filters.

use std::path::PathBuf;

/// The directory holding built filter components: `$NANTIAN_FILTER_DIR` if set, else
/// `<target dir>/wasm32-wasip2/filter`, where the target dir is `$CARGO_TARGET_DIR` or
/// the one the running executable was built into.
pub fn filter_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NANTIAN_FILTER_DIR") {
        return PathBuf::from(dir);
    }
    target_dir().join("wasm32-wasip2").join("filter")
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // Test binaries live in `<target>/<profile>/deps/`, tools in `<target>/<profile>/`.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .find(|dir| dir.join("wasm32-wasip2").is_dir())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// The built component of the filter crate `crate_name` (e.g. `nantian-filter-fault`).
///
/// # Panics
///
/// If the component has not been built, with the command that builds it.
pub fn built_filter(crate_name: &str) -> PathBuf {
    let path = filter_dir().join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.is_file(),
        "filter component {} is missing; build it with `cargo xtask build-filters` or \
         `cargo build --profile filter --target wasm32-wasip2 -p {crate_name}` \
         (or point NANTIAN_FILTER_DIR at a directory holding it)",
        path.display()
    );
    path
}
