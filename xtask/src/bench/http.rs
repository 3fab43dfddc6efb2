//! A one-shot HTTP/1.1 GET over std's `TcpStream`, enough to check that a target answers
//! and what the echo backend saw.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Status and (de-chunked) body of a response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// `GET path` with `Host: bench.local` and `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw)
}

/// Retries `get` until `accept` likes the answer or `limit` passes; `check` runs between
/// attempts so a target whose process died fails at once.
pub fn wait_for(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    accept: impl Fn(&Answer) -> bool,
    check: impl FnMut() -> Result<()>,
) -> Result<Answer> {
    retry(get, "http", addr, path, limit, accept, check)
}

/// `get` over TLS (any certificate accepted), by `curl`: the bench's certificate is
/// self-signed and only checks that the target answers through TLS.
pub fn get_tls(addr: SocketAddr, path: &str) -> Result<Answer> {
    let output = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-H",
            "Host: bench.local",
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("https://{addr}{path}"))
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').context("no status from curl")?;
    Ok(Answer {
        status: status.trim().parse().context("curl status")?,
        body: body.to_owned(),
    })
}

/// `wait_for` over TLS.
pub fn wait_for_tls(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    accept: impl Fn(&Answer) -> bool,
    check: impl FnMut() -> Result<()>,
) -> Result<Answer> {
    retry(get_tls, "https", addr, path, limit, accept, check)
}

fn retry(
    get: fn(SocketAddr, &str) -> Result<Answer>,
    scheme: &str,
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    accept: impl Fn(&Answer) -> bool,
    mut check: impl FnMut() -> Result<()>,
) -> Result<Answer> {
    let start = Instant::now();
    let mut last = String::from("no attempt");
    while start.elapsed() < limit {
        check()?;
        match get(addr, path) {
            Ok(answer) if accept(&answer) => return Ok(answer),
            Ok(answer) => last = format!("HTTP {}: {}", answer.status, answer.body.trim()),
            Err(err) => last = err.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{scheme}://{addr}{path} not ready after {limit:?} (last: {last})")
}

fn parse(raw: &[u8]) -> Result<Answer> {
    let head_end = find(raw, b"\r\n\r\n").context("no complete response head")?;
    let head = std::str::from_utf8(&raw[..head_end]).context("response head is not UTF-8")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no status code")?;
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").context("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let plain = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((plain.status, plain.body.as_str()), (200, "ok"));

        let chunked =
            parse(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!((chunked.status, chunked.body.as_str()), (404, "abcde"));

        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
