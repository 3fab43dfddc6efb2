//! Config changes: rejected snapshots leave the old one serving; swaps never drop
//! connections; removed listeners stop accepting and drain.

use std::time::Duration;

use http::{Request, StatusCode};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use nantian_proto::config as pb;
use tokio::net::TcpStream;

use crate::support::*;

/// One HTTP/1.1 connection to the gateway, so tests can tell connections apart.
async fn connection(port: u16) -> (http1::SendRequest<TestBody>, tokio::task::JoinHandle<()>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    let driver = tokio::spawn(async move {
        conn.await.expect("the connection is not broken");
    });
    (send, driver)
}

async fn get_on(send: &mut http1::SendRequest<TestBody>, path: &str) -> Reply {
    send.ready().await.expect("connection still usable");
    let req = Request::get(path)
        .header("host", "swap.test")
        .body(empty())
        .unwrap();
    read(send.send_request(req).await.expect("response")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_snapshots_change_nothing() {
    let a = start_echo("a").await;
    let port = free_port();
    let gw = gateway();
    let good = Snapshot::default()
        .with(listener("http", port, ""))
        .with(backend("a", "http", &[a.addr]))
        .with(rule("echo", "/", vec![backend_ref("a", 1)]));
    good.apply(&gw, "1").await.unwrap();

    let mut bad_regex = rule("bad", "/bad", vec![backend_ref("a", 1)]);
    bad_regex.matches[0].path = Some(pb::PathMatch {
        r#type: "RegularExpression".into(),
        value: "/(".into(),
    });
    let detail = good
        .clone()
        .with(bad_regex)
        .apply(&gw, "2")
        .await
        .unwrap_err();
    assert_eq!(detail.rejected.len(), 1, "{detail:?}");
    assert_eq!(detail.rejected[0].name, "route/test/bad/rule/0");
    assert!(
        detail.rejected[0].reason.contains("regular expression"),
        "{detail:?}"
    );

    let dangling = good
        .clone()
        .with(rule("dangling", "/d", vec![backend_ref("gone", 1)]));
    let detail = dangling.apply(&gw, "3").await.unwrap_err();
    assert!(
        detail.rejected[0].reason.contains("unknown backend"),
        "{detail:?}"
    );

    // A second listener on a taken port: the whole snapshot is refused, naming it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let detail = good
        .clone()
        .with(listener("other", taken_port, ""))
        .apply(&gw, "4")
        .await
        .unwrap_err();
    assert_eq!(detail.rejected[0].name, "listener/test/gw/other");
    assert!(
        detail.rejected[0]
            .reason
            .contains("cannot listen on 127.0.0.1"),
        "{detail:?}"
    );

    assert_eq!(gw.snapshot().version, "1");
    let still = get(&http1_client(), port, "swap.test", "/anything").await;
    assert_eq!(still.status, StatusCode::OK);
    let metrics = gw.metrics().encode();
    assert!(
        metrics.contains(r#"nantian_xds_updates_total{result="nack"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"nantian_xds_updates_total{result="ack"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_snapshot_that_cannot_bind_leaves_the_host_unready() {
    let gw = gateway();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let result = Snapshot::default()
        .with(listener("http", port, ""))
        .apply(&gw, "1")
        .await;
    assert!(result.is_err());
    assert!(!gw.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_keep_connections_and_in_flight_requests() {
    let a = start_echo("a").await;
    let b = start_echo("b").await;
    let port = free_port();
    let gw = gateway();
    let base = Snapshot::default()
        .with(listener("http", port, ""))
        .with(backend("a", "http", &[a.addr]))
        .with(backend("b", "http", &[b.addr]))
        .with(rule("hold", "/hold", vec![backend_ref("a", 1)]));
    base.clone()
        .with(rule("echo", "/echo", vec![backend_ref("a", 1)]))
        .apply(&gw, "1")
        .await
        .unwrap();

    let (mut keep_alive, keep_alive_driver) = connection(port).await;
    assert_eq!(
        get_on(&mut keep_alive, "/echo").await.header("x-backend"),
        "a"
    );

    let (mut holding, holding_driver) = connection(port).await;
    let in_flight = tokio::spawn(async move {
        let reply = get_on(&mut holding, "/hold").await;
        (reply, holding)
    });
    a.arrived.notified().await; // the request is parked at the backend

    base.clone()
        .with(rule("echo", "/echo", vec![backend_ref("b", 1)]))
        .apply(&gw, "2")
        .await
        .unwrap();
    // Same connection, new config.
    assert_eq!(
        get_on(&mut keep_alive, "/echo").await.header("x-backend"),
        "b"
    );

    a.release.notify_one();
    let (held, mut holding) = in_flight.await.unwrap();
    assert_eq!(held.status, StatusCode::OK);
    assert_eq!(held.header("x-backend"), "a");
    // Both connections outlived the swap and keep serving.
    assert_eq!(get_on(&mut holding, "/echo").await.header("x-backend"), "b");
    assert!(!keep_alive_driver.is_finished());
    assert!(!holding_driver.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_listeners_stop_accepting_and_drain() {
    let a = start_echo("a").await;
    let (kept_port, removed_port) = (free_port(), free_port());
    let gw = gateway();
    let mut on_removed = rule("removed", "/", vec![backend_ref("a", 1)]);
    on_removed.listeners = vec!["listener/test/gw/removed".into()];
    let kept = Snapshot::default()
        .with(listener("http", kept_port, ""))
        .with(backend("a", "http", &[a.addr]))
        .with(rule("kept", "/", vec![backend_ref("a", 1)]));
    kept.clone()
        .with(listener("removed", removed_port, ""))
        .with(on_removed)
        .apply(&gw, "1")
        .await
        .unwrap();

    let (mut draining, _driver) = connection(removed_port).await;
    let in_flight = tokio::spawn(async move { get_on(&mut draining, "/hold").await });
    a.arrived.notified().await;

    kept.apply(&gw, "2").await.unwrap();
    // Accepting stops as soon as the accept loop sees the signal.
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", removed_port))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the removed listener still accepts connections");

    a.release.notify_one();
    let held = in_flight.await.unwrap();
    assert_eq!(
        held.status,
        StatusCode::OK,
        "in-flight request on a removed listener completes"
    );
    assert_eq!(
        get(&http1_client(), kept_port, "k", "/x").await.status,
        StatusCode::OK
    );
}
