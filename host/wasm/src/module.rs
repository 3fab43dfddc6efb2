//! A compiled filter component, ready to instantiate: compiled once (or loaded from the
//! on-disk `.cwasm` cache) and linked once into an `InstancePre`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::bindings::HttpFilterPre;
use crate::engine::EngineInner;
use crate::error::WasmError;
use crate::state::StoreState;
use crate::wasi;

/// Where a module's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleOrigin {
    /// Compiled from the component bytes by this process.
    Compiled,
    /// Loaded from a `.cwasm` file in the engine's cache directory.
    DiskCache,
}

/// A loaded filter component. Shared by every binding that uses it.
pub struct FilterModule {
    name: String,
    sha256: String,
    origin: ModuleOrigin,
    pub(crate) pre: HttpFilterPre<StoreState>,
}

impl std::fmt::Debug for FilterModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterModule")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("origin", &self.origin)
            .finish()
    }
}

impl FilterModule {
    /// The name it was first loaded under (e.g. `module/header-modifier@0123456789ab`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lower-case hex SHA-256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether this module was compiled or loaded precompiled from the cache directory.
    pub fn origin(&self) -> ModuleOrigin {
        self.origin
    }

    pub(crate) fn load(
        engine: &EngineInner,
        name: &str,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Self, WasmError> {
        let (component, origin) = compile_or_load_cached(engine, name, sha256, bytes)?;
        let link_error = |e: wasmtime::Error| WasmError::Link {
            module: name.to_owned(),
            message: format!("{e:#}"),
        };
        let mut linker = engine.linker.clone();
        wasi::add_to_linker(&mut linker, &component).map_err(link_error)?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(link_error)?;
        let pre = linker.instantiate_pre(&component).map_err(link_error)?;
        let pre = HttpFilterPre::new(pre).map_err(link_error)?;
        Ok(FilterModule {
            name: name.to_owned(),
            sha256: sha256.to_owned(),
            origin,
            pre,
        })
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash is stable across
/// processes (std's hashers make no such promise).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// 16 hex digits identifying the engine's code-generation settings (wasmtime version,
/// target, tunables): a `.cwasm` is only reused by an engine with the same hash.
pub(crate) fn compat_hash(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize()[..8])
}

fn cache_path(engine: &EngineInner, sha256: &str) -> Option<PathBuf> {
    let dir = engine.config.cache_dir.as_ref()?;
    Some(dir.join(format!("{sha256}-{}.cwasm", engine.compat_hash)))
}

fn compile_or_load_cached(
    engine: &EngineInner,
    name: &str,
    sha256: &str,
    bytes: &[u8],
) -> Result<(Component, ModuleOrigin), WasmError> {
    let cached = cache_path(engine, sha256);
    if let Some(path) = &cached
        && path.is_file()
    {
        match deserialize_own_artifact(&engine.engine, path) {
            Ok(component) => return Ok((component, ModuleOrigin::DiskCache)),
            Err(e) => {
                tracing::warn!(module = name, path = %path.display(), "ignoring unusable cached module: {e:#}");
            }
        }
    }
    let component = Component::new(&engine.engine, bytes).map_err(|e| WasmError::Compile {
        module: name.to_owned(),
        message: format!("{e:#}"),
    })?;
    if let Some(path) = &cached {
        store_artifact(&component, path, name);
    }
    Ok((component, ModuleOrigin::Compiled))
}

/// Loads machine code from the cache directory.
#[allow(unsafe_code)]
fn deserialize_own_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the file is an artifact it produced and that nothing
    // changes it while mapped. Only this module writes into the cache directory, always
    // from `Component::serialize`, and always by renaming a complete temporary file into
    // place; the file name binds the source's SHA-256 and the engine's compatibility hash,
    // and wasmtime checks the artifact header against the engine on top of that.
    unsafe { Component::deserialize_file(engine, path) }
}

/// Writes the compiled component for the next start. Failure only costs a compile later.
fn store_artifact(component: &Component, path: &Path, name: &str) {
    let result = component
        .serialize()
        .map_err(|e| format!("{e:#}"))
        .and_then(|artifact| {
            // Unique per process and write, so concurrent writers never share a file.
            static WRITES: AtomicU64 = AtomicU64::new(0);
            let write = WRITES.fetch_add(1, Ordering::Relaxed);
            let temporary = path.with_extension(format!("tmp{}-{write}", std::process::id()));
            std::fs::write(&temporary, artifact)
                .and_then(|()| std::fs::rename(&temporary, path))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&temporary);
                    e.to_string()
                })
        });
    if let Err(e) = result {
        tracing::warn!(module = name, path = %path.display(), "cannot cache compiled module: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_lower_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn compat_hash_is_stable_for_one_engine() {
        let engine = Engine::default();
        assert_eq!(compat_hash(&engine), compat_hash(&engine));
        assert_eq!(compat_hash(&engine).len(), 16);
    }
}
