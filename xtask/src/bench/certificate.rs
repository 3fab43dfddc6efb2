//! The self-signed certificate every TLS row serves (one per run, in the run directory).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate then key in one file, as HAProxy wants it.
    pub bundle: PathBuf,
}

/// Writes the run's certificate for `bench.local` the first time, then reuses it.
pub fn ensure(run_dir: &Path) -> Result<Files> {
    let files = Files {
        cert: run_dir.join("bench-cert.pem"),
        key: run_dir.join("bench-key.pem"),
        bundle: run_dir.join("bench-bundle.pem"),
    };
    if !files.bundle.is_file() {
        let generated = rcgen::generate_simple_self_signed(vec!["bench.local".to_owned()])
            .context("generating the bench certificate")?;
        let (cert, key) = (generated.cert.pem(), generated.key_pair.serialize_pem());
        std::fs::write(&files.cert, &cert)?;
        std::fs::write(&files.key, &key)?;
        std::fs::write(&files.bundle, format!("{cert}{key}"))?;
    }
    Ok(files)
}
