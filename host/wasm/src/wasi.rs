//! The slice of WASI a filter gets: randomness, clocks, an empty environment, and
//! stdout/stderr that go to the host log. Everything else a component imports (files,
//! sockets, stdin, clock timers, exit) is defined by the caller as a trap.
//!
//! Why not `wasmtime_wasi::p2::add_to_linker_sync`: its stream functions (`blocking-write`,
//! even dropping a stream) enter a Tokio runtime with `block_on`, which panics when the
//! filter runs on a Tokio worker thread, as the data plane's filters do. These functions
//! are plain, non-blocking host code instead, and grant no capability.

use wasmtime::StoreContextMut;
use wasmtime::component::{
    Component, ComponentType, Lift, Linker, LinkerInstance, Lower, Resource,
};

use crate::error::GuestMisuse;
use crate::host_services::monotonic_nanos;
use crate::state::StoreState;

/// Largest `get-random-bytes` request served; more is a trap, not a host allocation.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// `wasi:clocks/wall-clock.datetime`.
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

/// `wasi:io/streams.stream-error`.
///
/// The WASI resource types (`output-stream`, `pollable`, `error`, `terminal-output`) are
/// left to `define_unknown_imports_as_traps`, which defines every one as
/// `ResourceType::host::<()>()`: so `Resource<()>` is their Rust type here, and streams
/// are told apart by rep ([`STDOUT`], [`STDERR`]).
#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum StreamError {
    #[component(name = "last-operation-failed")]
    #[allow(dead_code)]
    LastOperationFailed(Resource<()>),
    #[component(name = "closed")]
    Closed,
}

/// Reps of the two output streams a filter can open.
const STDOUT: u32 = 1;
const STDERR: u32 = 2;
/// Bytes `check-write` allows at once; a partial line longer than this is logged as is.
const STDIO_LINE: usize = 4096;

/// Guest stdout/stderr bytes not yet logged (an incomplete line).
#[derive(Default)]
pub(crate) struct GuestStdio {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn log_line(state: &StoreState, rep: u32, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let filter = state.binding.display_name.as_str();
    let module = state.binding.module.as_str();
    if rep == STDERR {
        tracing::warn!(filter, module, stream = "stderr", "{line}");
    } else {
        tracing::info!(filter, module, stream = "stdout", "{line}");
    }
}

/// Appends `bytes` to `buffer` and emits every complete line (without its newline), or a
/// partial line once it reaches [`STDIO_LINE`]; keeps the rest for the next write. Rust's
/// `eprintln!` writes one line in several pieces.
fn take_lines(buffer: &mut Vec<u8>, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
    buffer.extend_from_slice(bytes);
    let mut start = 0;
    while let Some(newline) = buffer[start..].iter().position(|&b| b == b'\n') {
        emit(&buffer[start..start + newline]);
        start += newline + 1;
    }
    if buffer.len() - start >= STDIO_LINE {
        emit(&buffer[start..]);
        start = buffer.len();
    }
    buffer.drain(..start);
}

fn write_stdio(
    mut store: StoreContextMut<'_, StoreState>,
    rep: u32,
    bytes: &[u8],
) -> Result<(), StreamError> {
    let state = store.data_mut();
    let mut buffer = std::mem::take(match rep {
        STDOUT => &mut state.stdio.stdout,
        STDERR => &mut state.stdio.stderr,
        _ => return Err(StreamError::Closed),
    });
    take_lines(&mut buffer, bytes, |line| log_line(state, rep, line));
    match rep {
        STDOUT => state.stdio.stdout = buffer,
        _ => state.stdio.stderr = buffer,
    }
    Ok(())
}

fn add_stdout(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    instance.func_wrap("get-stdout", |_, (): ()| {
        Ok((Resource::<()>::new_own(STDOUT),))
    })
}

fn add_stderr(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    instance.func_wrap("get-stderr", |_, (): ()| {
        Ok((Resource::<()>::new_own(STDERR),))
    })
}

/// No terminal: output is never a TTY.
fn add_no_terminal(instance: &mut Instance<'_>, getter: &str) -> wasmtime::Result<()> {
    instance.func_wrap(getter, |_, (): ()| Ok((None::<Resource<()>>,)))
}

/// The `output-stream` methods libc and Rust std use for stdout/stderr. Writes never
/// block, so `check-write` always grants a line's worth and flushes are no-ops.
fn add_output_stream(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    type Stream = Resource<()>;
    instance.func_wrap("[method]output-stream.check-write", |_, (_,): (Stream,)| {
        Ok((Ok::<u64, StreamError>(STDIO_LINE as u64),))
    })?;
    instance.func_wrap(
        "[method]output-stream.write",
        |store, (stream, bytes): (Stream, Vec<u8>)| Ok((write_stdio(store, stream.rep(), &bytes),)),
    )?;
    instance.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |store, (stream, bytes): (Stream, Vec<u8>)| Ok((write_stdio(store, stream.rep(), &bytes),)),
    )?;
    for flush in [
        "[method]output-stream.flush",
        "[method]output-stream.blocking-flush",
    ] {
        instance.func_wrap(flush, |_, (_,): (Stream,)| Ok((Ok::<(), StreamError>(()),)))?;
    }
    // libc waits for writability before writing; the only pollables a filter can get are
    // these, and they are always ready.
    instance.func_wrap(
        "[method]output-stream.subscribe",
        |_, (stream,): (Stream,)| Ok((Resource::<()>::new_own(stream.rep()),)),
    )
}

/// `wasi:io/poll` over output-stream pollables, which are always ready.
fn add_poll(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    type Pollable = Resource<()>;
    instance.func_wrap("[method]pollable.ready", |_, (_,): (Pollable,)| Ok((true,)))?;
    instance.func_wrap("[method]pollable.block", |_, (_,): (Pollable,)| Ok(()))?;
    instance.func_wrap("poll", |_, (pollables,): (Vec<Pollable>,)| {
        let ready = 0..u32::try_from(pollables.len()).unwrap_or(u32::MAX);
        Ok((ready.collect::<Vec<u32>>(),))
    })
}

fn wall_clock_now() -> Datetime {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Datetime {
        seconds: since_epoch.as_secs(),
        nanoseconds: since_epoch.subsec_nanos(),
    }
}

fn random_bytes(len: u64) -> wasmtime::Result<Vec<u8>> {
    if len > MAX_RANDOM_BYTES {
        return Err(wasmtime::Error::new(GuestMisuse(format!(
            "asked for {len} random bytes, more than {MAX_RANDOM_BYTES}"
        ))));
    }
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
    rand::fill(&mut bytes[..]);
    Ok(bytes)
}

type Instance<'a> = LinkerInstance<'a, StoreState>;

fn add_random(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    instance.func_wrap("get-random-bytes", |_, (len,): (u64,)| {
        Ok((random_bytes(len)?,))
    })?;
    instance.func_wrap("get-random-u64", |_, (): ()| Ok((rand::random::<u64>(),)))
}

fn add_insecure_random(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    instance.func_wrap("get-insecure-random-bytes", |_, (len,): (u64,)| {
        Ok((random_bytes(len)?,))
    })?;
    instance.func_wrap("get-insecure-random-u64", |_, (): ()| {
        Ok((rand::random::<u64>(),))
    })
}

fn add_insecure_seed(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    instance.func_wrap("insecure-seed", |_, (): ()| {
        Ok(((rand::random::<u64>(), rand::random::<u64>()),))
    })
}

fn add_wall_clock(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    instance.func_wrap("now", |_, (): ()| Ok((wall_clock_now(),)))?;
    instance.func_wrap("resolution", |_, (): ()| {
        Ok((Datetime {
            seconds: 0,
            nanoseconds: 1,
        },))
    })
}

fn add_monotonic_clock(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    instance.func_wrap("now", |_, (): ()| Ok((monotonic_nanos(),)))?;
    instance.func_wrap("resolution", |_, (): ()| Ok((1u64,)))
}

fn add_environment(instance: &mut Instance<'_>) -> wasmtime::Result<()> {
    instance.func_wrap("get-environment", |_, (): ()| {
        Ok((Vec::<(String, String)>::new(),))
    })?;
    instance.func_wrap("get-arguments", |_, (): ()| Ok((Vec::<String>::new(),)))?;
    instance.func_wrap("initial-cwd", |_, (): ()| Ok((None::<String>,)))
}

/// Defines the supported WASI functions under the exact (versioned) names `component`
/// imports them by. The caller must then run `define_unknown_imports_as_traps`, which
/// stubs the rest and defines the resource types these functions use.
pub(crate) fn add_to_linker(
    linker: &mut Linker<StoreState>,
    component: &Component,
) -> wasmtime::Result<()> {
    let engine = linker.engine().clone();
    let component_type = component.component_type();
    for (name, _) in component_type.imports(&engine) {
        let interface = name.split('@').next().unwrap_or(name);
        let add: fn(&mut Instance<'_>) -> wasmtime::Result<()> = match interface {
            "wasi:random/random" => add_random,
            "wasi:random/insecure" => add_insecure_random,
            "wasi:random/insecure-seed" => add_insecure_seed,
            "wasi:clocks/wall-clock" => add_wall_clock,
            "wasi:clocks/monotonic-clock" => add_monotonic_clock,
            "wasi:cli/environment" => add_environment,
            "wasi:cli/stdout" => add_stdout,
            "wasi:cli/stderr" => add_stderr,
            "wasi:cli/terminal-stdin" => |i| add_no_terminal(i, "get-terminal-stdin"),
            "wasi:cli/terminal-stdout" => |i| add_no_terminal(i, "get-terminal-stdout"),
            "wasi:cli/terminal-stderr" => |i| add_no_terminal(i, "get-terminal-stderr"),
            "wasi:io/streams" => add_output_stream,
            "wasi:io/poll" => add_poll,
            _ => continue,
        };
        add(&mut linker.instance(name)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_is_logged_line_by_line() {
        let mut buffer = Vec::new();
        let mut lines: Vec<String> = Vec::new();
        let mut emit = |line: &[u8]| lines.push(String::from_utf8_lossy(line).into_owned());
        take_lines(&mut buffer, b"one", &mut emit);
        take_lines(&mut buffer, b" piece\ntwo\nthr", &mut emit);
        assert_eq!(buffer, b"thr");
        take_lines(&mut buffer, &[b'x'; STDIO_LINE], &mut emit);
        assert!(buffer.is_empty());
        assert_eq!(lines[..2], ["one piece", "two"]);
        assert_eq!(lines[2].len(), STDIO_LINE + 3);
    }

    #[test]
    fn random_bytes_are_bounded() {
        assert_eq!(random_bytes(16).unwrap().len(), 16);
        assert!(random_bytes(MAX_RANDOM_BYTES + 1).is_err());
    }
}
