use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::*;

fn parse_str(head: &str) -> Parse {
    parse(head.as_bytes(), &mut Vec::new())
}

#[test]
fn http11_requests_with_small_known_bodies_are_taken_and_the_rest_is_not() {
    let Parse::Complete(head) = parse_str("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nGET /next") else {
        panic!("a GET is served here");
    };
    assert_eq!(head.len, "GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n".len());
    assert!(!head.close);
    let Parse::Complete(head) = parse_str(
        "DELETE /a HTTP/1.1\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
    ) else {
        panic!("a DELETE with an empty body is served here");
    };
    assert!(head.close);
    assert_eq!(head.body, 0);
    let Parse::Complete(head) = parse_str("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET")
    else {
        panic!("a POST whose body came with it is served here");
    };
    assert_eq!((head.len, head.body), (38, 5));
    assert!(
        matches!(
            parse_str("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel"),
            Parse::Partial
        ),
        "the rest of the body is waited for"
    );
    let largest = format!("POST / HTTP/1.1\r\nContent-Length: {MAX_BODY}\r\n\r\n");
    assert!(matches!(parse_str(&largest), Parse::Partial));
    for not_here in [
        &format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        ),
        "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
        "POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\nhi",
        "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
        "HEAD / HTTP/1.1\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
    ] {
        assert!(
            matches!(parse_str(not_here), Parse::NotDirect),
            "{not_here:?}"
        );
    }
    assert!(matches!(parse_str(""), Parse::Partial));
    assert!(matches!(parse_str("GET / HTTP/1.1\r\nHo"), Parse::Partial));
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
    assert!(matches!(
        parse_str(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
        Parse::NotDirect
    ));
    let huge = format!("GET / HTTP/1.1\r\nx: {}", "v".repeat(MAX_HEAD_BYTES));
    assert!(matches!(parse_str(&huge), Parse::NotDirect));
}

#[test]
fn requests_are_built_from_the_head() {
    let raw =
        b"GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
    let mut fields = Vec::new();
    let Parse::Complete(head) = parse(raw, &mut fields) else {
        panic!("complete");
    };
    let req = build_request(Bytes::from_static(raw), &head, &fields, Bytes::new()).unwrap();
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().authority().unwrap(), "example.com");
    assert_eq!(req.uri().path_and_query().unwrap(), "/p?q=1");
    let values: Vec<_> = req.headers().get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert!(req.body().is_end_stream());
}

fn head_of(response: Response<ProxyBody>, close: bool) -> (String, Framing) {
    let (parts, body) = response.into_parts();
    let mut out = Vec::new();
    let framing = encode_head(&parts, body.size_hint().exact(), close, &mut out);
    (String::from_utf8(out).unwrap(), framing)
}

fn full(body: &'static str) -> ProxyBody {
    Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn streamed() -> (
    mpsc::Sender<Result<Frame<Bytes>, crate::upstream::BoxError>>,
    ProxyBody,
) {
    let (tx, rx) = mpsc::channel(4);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed_unsync();
    (tx, body)
}

#[test]
fn response_heads_get_date_and_framing() {
    let (head, framing) = head_of(Response::new(full("hello")), false);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\ndate: "), "{head}");
    assert!(head.ends_with("content-length: 5\r\n\r\n"), "{head}");
    assert_eq!(framing, Framing::Length(5));

    let (_, body) = streamed();
    let (head, framing) = head_of(Response::new(body), true);
    assert!(
        head.ends_with("connection: close\r\ntransfer-encoding: chunked\r\n\r\n"),
        "{head}"
    );
    assert_eq!(framing, Framing::Chunked);

    // A declared length wins over the body's hint; the response's own Date is kept.
    let response = Response::builder()
        .header("content-length", "3")
        .header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
        .header("transfer-encoding", "chunked")
        .body(streamed().1)
        .unwrap();
    let (head, framing) = head_of(response, false);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 3\r\n\r\n"
    );
    assert_eq!(framing, Framing::Length(3));

    let no_content = Response::builder()
        .status(204)
        .header("content-length", "0")
        .body(full(""))
        .unwrap();
    let (head, framing) = head_of(no_content, false);
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(framing, Framing::None);

    let not_modified = Response::builder()
        .status(304)
        .header("content-length", "10")
        .body(full(""))
        .unwrap();
    let (head, framing) = head_of(not_modified, false);
    assert!(head.contains("content-length: 10\r\n"), "{head}");
    assert_eq!(framing, Framing::None);
}

#[test]
fn numbers_are_written_in_decimal_and_hex() {
    let mut out = Vec::new();
    for (n, base) in [
        (0, 10),
        (19, 10),
        (u64::MAX, 10),
        (255, 16),
        (0, 16),
        (4096, 16),
    ] {
        append_number(&mut out, n, base);
        out.push(b' ');
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "0 19 18446744073709551615 ff 0 1000 "
    );
}

/// A handler made of a closure; it records the requests it saw.
struct TestHandler<F> {
    answer: F,
    seen: Mutex<Vec<String>>,
}

impl<F> Handler for TestHandler<F>
where
    F: Fn(&Request<RequestBody>) -> BoxFuture<'static, Response<ProxyBody>> + Sync,
{
    fn handle(
        &self,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{} {}", req.method(), req.uri()));
        (self.answer)(&req)
    }
}

fn handler<F>(answer: F) -> TestHandler<F>
where
    F: Fn(&Request<RequestBody>) -> BoxFuture<'static, Response<ProxyBody>> + Sync,
{
    TestHandler {
        answer,
        seen: Mutex::new(Vec::new()),
    }
}

fn hello(_: &Request<RequestBody>) -> BoxFuture<'static, Response<ProxyBody>> {
    Box::pin(async { Response::new(full("hello")) })
}

struct Served {
    outcome: Outcome,
    rest: BytesMut,
}

/// Serves the server end of a duplex pipe until the loop ends.
async fn serve_on<H: Handler>(
    handler: &H,
    mut server: DuplexStream,
    shutdown: &AtomicBool,
) -> Served {
    let activity = Arc::new(Activity::default());
    let mut buf = BytesMut::new();
    let outcome = serve(handler, &activity, &mut server, &mut buf, shutdown).await;
    Served { outcome, rest: buf }
}

/// Sends `request` (all of it at once), serves until the loop ends, and returns how it
/// ended and everything the client received.
async fn serve_whole<H: Handler>(handler: &H, request: &[u8]) -> (Outcome, String) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client.write_all(request).await.unwrap();
    let served = serve_on(handler, server, &AtomicBool::new(false)).await;
    let mut all = String::new();
    client.read_to_string(&mut all).await.unwrap();
    (served.outcome, all)
}

async fn read_available(client: &mut DuplexStream, at_least: usize) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while seen.len() < at_least {
        let n = client.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(seen).unwrap()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_until_one_with_a_streamed_body() {
    let h = handler(hello);
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client
        .write_all(
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\
              POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let served = serve_on(&h, server, &AtomicBool::new(false)).await;
    assert_eq!(served.outcome, Outcome::Handoff);
    assert!(
        served.rest.starts_with(b"POST /3 HTTP/1.1\r\n"),
        "{:?}",
        served.rest
    );
    assert!(served.rest.ends_with(b"\r\n\r\n2\r\nhi\r\n0\r\n\r\n"));
    assert_eq!(*h.seen.lock().unwrap(), ["GET /1", "POST /2"]);
    let answers = read_available(&mut client, 2).await;
    assert_eq!(
        answers.matches("HTTP/1.1 200 OK\r\n").count(),
        2,
        "{answers}"
    );
    assert_eq!(answers.matches("\r\n\r\nhello").count(), 2, "{answers}");
}

/// Answers with the request's own body.
fn echo(req: &Request<RequestBody>) -> BoxFuture<'static, Response<ProxyBody>> {
    let body = req.body().clone();
    Box::pin(async move { Response::new(body.map_err(|never| match never {}).boxed_unsync()) })
}

#[tokio::test]
async fn a_body_sent_after_its_head_is_read_whole_and_the_next_request_follows_it() {
    let h = handler(echo);
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move {
        let h = h;
        let served = serve_on(&h, server, &AtomicBool::new(false)).await;
        (served.outcome, h.seen.into_inner().unwrap())
    });
    // The head first, its body in two later writes, the next request right behind it.
    client
        .write_all(b"PUT /a HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhel")
        .await
        .unwrap();
    tokio::task::yield_now().await;
    client.write_all(b"lo ").await.unwrap();
    tokio::task::yield_now().await;
    client
        .write_all(b"worldGET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = String::new();
    client.read_to_string(&mut all).await.unwrap();
    let (outcome, seen) = serving.await.unwrap();
    assert_eq!(outcome, Outcome::Closed);
    assert_eq!(seen, ["PUT /a", "GET /b"]);
    let answers: Vec<&str> = all.split("HTTP/1.1 200 OK\r\n").skip(1).collect();
    assert_eq!(answers.len(), 2, "{all}");
    assert!(
        answers[0].ends_with("content-length: 11\r\n\r\nhello world"),
        "{all}"
    );
    assert!(answers[1].ends_with("content-length: 0\r\n\r\n"), "{all}");
}

#[tokio::test]
async fn connection_close_ends_the_loop_after_the_answer() {
    let h = handler(hello);
    let (outcome, all) = serve_whole(
        &h,
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(outcome, Outcome::Closed);
    assert!(all.contains("connection: close\r\n"), "{all}");
    assert!(all.ends_with("\r\n\r\nhello"), "{all}");
    assert_eq!(h.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_client_closing_mid_request_drops_the_request() {
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Alarm;
    impl Drop for Alarm {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
    let h = handler(|_| {
        Box::pin(async {
            let _alarm = Alarm;
            std::future::pending::<()>().await;
            unreachable!()
        })
    });
    let (mut client, server) = tokio::io::duplex(1024);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let shutdown = AtomicBool::new(false);
    let mut client = Some(client);
    let (served, ()) = tokio::join!(serve_on(&h, server, &shutdown), async {
        while h.seen.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        drop(client.take());
    });
    assert_eq!(served.outcome, Outcome::Closed);
    assert_eq!(DROPPED.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn streamed_bodies_are_chunked_and_each_chunk_is_sent_as_it_comes() {
    let (tx, body) = streamed();
    let body = Mutex::new(Some(body));
    let h = handler(move |_| {
        let body = body.lock().unwrap().take().unwrap();
        Box::pin(async move { Response::new(body) })
    });
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let shutdown = AtomicBool::new(false);
    let mut client = Some(client);
    let client_side = async {
        let mut client = client.take().unwrap();
        tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
            .await
            .unwrap();
        let mut seen = String::new();
        while !seen.ends_with("first\r\n") {
            seen += &read_available(&mut client, 1).await;
        }
        assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
        assert!(seen.ends_with("\r\n\r\n5\r\nfirst\r\n"), "{seen}");
        let mut trailers = HeaderMap::new();
        trailers.insert("x-done", HeaderValue::from_static("yes"));
        tx.send(Ok(Frame::data(Bytes::from_static(b"second!"))))
            .await
            .unwrap();
        tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
        let expected = "7\r\nsecond!\r\n0\r\nx-done: yes\r\n\r\n";
        let rest = read_available(&mut client, expected.len()).await;
        assert_eq!(rest, expected);
    };
    let (served, ()) = tokio::join!(serve_on(&h, server, &shutdown), client_side);
    // The client is gone once it has read everything.
    assert_eq!(served.outcome, Outcome::Closed);
}

#[tokio::test]
async fn a_body_longer_than_its_length_closes_the_connection() {
    let h = handler(|_| {
        Box::pin(async {
            Response::builder()
                .header("content-length", "2")
                .body(full("toolong"))
                .unwrap()
        })
    });
    let (outcome, all) =
        serve_whole(&h, b"GET / HTTP/1.1\r\n\r\nGET /again HTTP/1.1\r\n\r\n").await;
    assert_eq!(outcome, Outcome::Closed);
    assert!(all.ends_with("content-length: 2\r\n\r\n"), "{all}");
    assert_eq!(h.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_shutdown_closes_an_idle_connection_and_finishes_a_request_first() {
    let h = handler(hello);
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let served = serve_on(&h, server, &AtomicBool::new(true)).await;
    assert_eq!(served.outcome, Outcome::Closed);
    let mut all = String::new();
    client.read_to_string(&mut all).await.unwrap();
    assert_eq!(all, "");

    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let shutdown = AtomicBool::new(false);
    let go = Arc::new(tokio::sync::Notify::new());
    let answer_go = go.clone();
    let h = handler(move |_| {
        let go = answer_go.clone();
        Box::pin(async move {
            go.notified().await;
            Response::new(full("late"))
        })
    });
    let serving = serve_on(&h, server, &shutdown);
    let mut serving = pin!(serving);
    assert!(
        futures::poll!(serving.as_mut()).is_pending(),
        "the request is in flight"
    );
    assert_eq!(h.seen.lock().unwrap().len(), 1);
    shutdown.store(true, Ordering::Relaxed);
    go.notify_one();
    assert_eq!(serving.await.outcome, Outcome::Closed);
    let mut all = String::new();
    client.read_to_string(&mut all).await.unwrap();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(all.contains("connection: close\r\n"), "{all}");
    assert!(all.ends_with("late"), "{all}");
}
