//! Where the workspace and its build outputs are.

use std::path::{Path, PathBuf};

/// The repository root and the cargo target directory the xtasks build into and read from.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

impl Workspace {
    /// The workspace containing this xtask, with `$CARGO_TARGET_DIR` (else `<root>/target`).
    ///
    /// `cargo run` sets `CARGO_MANIFEST_DIR` for the process; prefer it to the path compiled
    /// in, because clones sharing one target dir share one `release/xtask` binary too.
    pub fn locate() -> Self {
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = Path::new(&manifest_dir)
            .parent()
            .expect("xtask lives one level below the workspace root")
            .to_path_buf();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|dir| {
                if dir.is_relative() {
                    root.join(dir)
                } else {
                    dir
                }
            })
            .unwrap_or_else(|| root.join("target"));
        Self { root, target_dir }
    }

    /// A release binary, e.g. `nantian-host`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.target_dir.join("release").join(name)
    }

    /// A binary of the shipping build (`cargo build --profile dist`: fat LTO, one codegen
    /// unit), the one the benchmark measures.
    pub fn dist_bin(&self, name: &str) -> PathBuf {
        self.target_dir.join("dist").join(name)
    }

    /// Where `cargo build --profile filter --target wasm32-wasip2` puts filter components
    /// (`<crate_name>.wasm`, with underscores).
    pub fn wasm_out_dir(&self) -> PathBuf {
        self.target_dir.join("wasm32-wasip2").join("filter")
    }

    /// The built-in filters as the controller loads them by default (`<filter>.wasm` next
    /// to its executable, in `filters/`).
    pub fn filter_dir(&self) -> PathBuf {
        self.target_dir.join("release").join("filters")
    }

    /// Where `cargo xtask image` writes the OCI image archives unless told otherwise.
    pub fn image_dir(&self) -> PathBuf {
        self.target_dir.join("images")
    }
}
