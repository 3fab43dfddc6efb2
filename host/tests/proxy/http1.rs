//! HTTP/1.1 on client connections as the wire sees it: pipelining across the direct path
//! and hyper, `Connection: close`, `Date`, and a client leaving mid-request.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::*;

/// One response read off the wire: status line, lower-cased headers, body (de-chunked).
struct WireResponse {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl WireResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.ends_with("\r\n"), "truncated line {line:?}");
    line.truncate(line.len() - 2);
    line
}

async fn read_response(reader: &mut BufReader<TcpStream>) -> WireResponse {
    let status_line = read_line(reader).await;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader).await;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header line");
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut response = WireResponse {
        status_line,
        headers,
        body: Vec::new(),
    };
    if let Some(length) = response.header("content-length") {
        let mut body = vec![0; length.parse().unwrap()];
        reader.read_exact(&mut body).await.unwrap();
        response.body = body;
    } else if response.header("transfer-encoding") == Some("chunked") {
        loop {
            let size = usize::from_str_radix(&read_line(reader).await, 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.unwrap();
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    }
    response
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_the_hand_over_to_hyper() {
    let (_gw, _echo, port) = gateway_with_echo().await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The GETs and the small POST take the direct path; the chunked POST hands the
    // connection to hyper, which must still see the GET pipelined behind it.
    stream
        .write_all(
            b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nsmall\
              POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
              GET /four HTTP/1.1\r\nHost: a\r\nX-Seen: yes\r\n\r\n",
        )
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut paths = Vec::new();
    for _ in 0..4 {
        let response = read_response(&mut reader).await;
        assert_eq!(response.status_line, "HTTP/1.1 200 OK");
        assert!(response.header("date").is_some(), "no Date");
        assert_eq!(response.header("keep-alive"), None, "hop-by-hop passed on");
        paths.push(response.header("x-path").unwrap().to_string());
        match paths.last().unwrap().as_str() {
            "/two" => assert_eq!(response.body, b"small"),
            "/three" => assert_eq!(response.body, b"hello"),
            "/four" => {
                let body = String::from_utf8(response.body).unwrap();
                assert!(body.contains("x-seen: yes"), "{body}");
            }
            _ => {}
        }
    }
    assert_eq!(paths, ["/one", "/two", "/three", "/four"]);
}

#[tokio::test]
async fn connection_close_is_answered_then_the_connection_closes() {
    let (_gw, _echo, port) = gateway_with_echo().await;
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(b"GET /bye HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut reader).await;
    assert_eq!(response.status_line, "HTTP/1.1 200 OK");
    assert_eq!(response.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "not closed: {read:?} {rest:?}");
}

/// Sends `request` (for `/hold`), waits until the backend has it, then leaves: the
/// gateway must drop its upstream request, which the backend sees.
async fn leave_mid_request(request: &[u8]) {
    let (_gw, echo, port) = gateway_with_echo().await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(request).await.unwrap();
    echo.arrived.notified().await;
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), echo.abandoned.notified())
        .await
        .expect("the upstream request outlived its client");
}

#[tokio::test]
async fn a_client_leaving_cancels_its_bodiless_request_upstream() {
    leave_mid_request(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n").await;
}

#[tokio::test]
async fn a_client_leaving_cancels_its_request_with_a_body_upstream() {
    leave_mid_request(b"POST /hold HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi").await;
}

#[tokio::test]
async fn malformed_and_unusual_heads_get_hyper_answers() {
    let (_gw, _echo, port) = gateway_with_echo().await;
    // A request line httparse refuses: hyper's 400.
    let bad = raw_exchange(port, "GET /a b c HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    // HEAD: headers only, by hyper.
    let head = raw_exchange(port, "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Expect: 100-continue gets its interim answer.
    let expect = raw_exchange(
        port,
        "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert!(expect.starts_with("HTTP/1.1 100"), "{expect}");
}
