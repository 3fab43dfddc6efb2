//! Gateway API conformance replay: upstream's conformance tests, ported to data
//! (`tests/conformance/cases/*.yaml`), run against the standalone controller, its hosts and
//! `nantian-echo` backends on loopback.
//!
//! `cargo test --release -p nantian-e2e --test conformance` prints one line per test of the
//! GATEWAY-HTTP, GATEWAY-GRPC and GATEWAY-TLS profiles (`PASS`, `FAIL: reason`, `SKIP: reason`) and a summary line; the test
//! fails when any case fails. The upstream manifests are read from the shared data directory
//! (`$NANTIAN_SHARED_DIR`, else `../shared` beside the workspace). Environment:
//! - `NANTIAN_CONFORMANCE_CASES=A,B`: replay only these ShortNames;
//! - `NANTIAN_CONFORMANCE_TIMEOUT_SECS` (default 30, upstream's `MaxTimeToConsistency`):
//!   how long any one expectation may take to converge.

#![forbid(unsafe_code)]

#[path = "conformance/addresses.rs"]
mod addresses;
#[path = "conformance/certificates.rs"]
mod certificates;
#[path = "conformance/compare.rs"]
mod compare;
#[path = "conformance/grpc.rs"]
mod grpc;
#[path = "conformance/manifests.rs"]
mod manifests;
#[path = "conformance/mirror.rs"]
mod mirror;
#[path = "conformance/model.rs"]
mod model;
#[path = "conformance/pod_tls.rs"]
mod pod_tls;
#[path = "conformance/roundtrip.rs"]
mod roundtrip;
#[path = "conformance/runner.rs"]
mod runner;
#[path = "conformance/status.rs"]
mod status;
#[path = "conformance/steps.rs"]
mod steps;
#[path = "conformance/tcp.rs"]
mod tcp;
#[path = "conformance/tls.rs"]
mod tls;
#[path = "conformance/websocket.rs"]
mod websocket;
#[path = "conformance/weight.rs"]
mod weight;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use model::{IndexEntry, load_case, load_index};
use runner::Replay;

/// `tests/conformance/`: the suite index and the case files.
fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// The release's `conformance/` directory (base and per-test manifests) in shared/.
fn upstream_dir(version: &str) -> anyhow::Result<PathBuf> {
    let shared = match std::env::var_os("NANTIAN_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = shared.join("gateway-api").join(version).join("conformance");
    if !dir.join("base/manifests.yaml").is_file() {
        bail!(
            "the upstream Gateway API {version} conformance manifests are not at {} — set \
             NANTIAN_SHARED_DIR to the shared data directory (it holds gateway-api/{version}/conformance/)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Report lines go straight to stdout, past libtest's capture, so a passing run shows the
/// table too.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
}

#[test]
fn conformance() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tally = runtime
        .block_on(replay_all())
        .unwrap_or_else(|e| panic!("{e:#}"));
    report(&format!(
        "conformance: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.skipped
    ));
    assert_eq!(
        tally.failed, 0,
        "{} conformance cases failed (see the FAIL lines)",
        tally.failed
    );
}

async fn replay_all() -> anyhow::Result<Tally> {
    let index = load_index(&data_dir())?;
    let upstream = upstream_dir(&index.gateway_api_version)?;
    let selected: Option<Vec<String>> = std::env::var("NANTIAN_CONFORMANCE_CASES").ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let timeout = std::env::var("NANTIAN_CONFORMANCE_TIMEOUT_SECS")
        .ok()
        .map(|v| v.parse::<u64>().context("NANTIAN_CONFORMANCE_TIMEOUT_SECS"))
        .transpose()?
        .unwrap_or(30);

    // Load every case first: a malformed file is a bug in the suite, not a FAIL.
    let mut plan = Vec::new();
    for IndexEntry { name, skip } in &index.tests {
        let not_selected = selected.as_ref().is_some_and(|s| !s.contains(name));
        match (skip, not_selected) {
            (Some(reason), _) => plan.push((name.clone(), Err(reason.clone()))),
            (None, true) => plan.push((
                name.clone(),
                Err("not selected by NANTIAN_CONFORMANCE_CASES".into()),
            )),
            (None, false) => plan.push((name.clone(), Ok(load_case(&data_dir(), name)?))),
        }
    }

    let mut tally = Tally::default();
    let mut replay = None;
    for (name, case) in plan {
        let case = match case {
            Err(reason) => {
                report(&format!("SKIP {name}: {reason}"));
                tally.skipped += 1;
                continue;
            }
            Ok(case) => case,
        };
        if replay.is_none() {
            replay = Some(Replay::start(upstream.clone(), Duration::from_secs(timeout)).await?);
        }
        let replay = replay.as_mut().expect("started above");
        match replay.run_case(&case).await {
            Ok(()) => {
                report(&format!("PASS {name}"));
                tally.passed += 1;
            }
            Err(reason) => {
                report(&format!("FAIL {name}: {reason}"));
                tally.failed += 1;
            }
        }
    }
    Ok(tally)
}

/// The data files are consistent: every case file is listed and parses (those of skipped
/// tests too, ready for their feature), every test that is not skipped has one, and every
/// object a step names exists in the case's or the base's manifests or among the Secrets
/// of the setup.
#[test]
fn suite_data_is_consistent() {
    let index = load_index(&data_dir()).unwrap();
    let upstream = upstream_dir(&index.gateway_api_version).unwrap();
    let mut base = manifests::load(&upstream, "base/manifests.yaml").unwrap();
    base.extend(certificates::generate().unwrap().objects);
    let with_file = |e: &&IndexEntry| {
        e.skip.is_none()
            || data_dir()
                .join("cases")
                .join(format!("{}.yaml", e.name))
                .exists()
    };
    for entry in index.tests.iter().filter(with_file) {
        let case = load_case(&data_dir(), &entry.name).unwrap();
        assert!(
            case.upstream.starts_with("conformance/tests/") && case.upstream.ends_with(".go"),
            "{}: upstream should name the Go test file",
            case.name
        );
        let mut objects = base.clone();
        for manifest in &case.manifests {
            objects.extend(
                manifests::load(&upstream, manifest)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", case.name)),
            );
        }
        objects.extend(case.steps.iter().filter_map(|step| match step {
            model::Step::Create(c) => Some(c.object.clone()),
            _ => None,
        }));
        for (kind, nn) in named_objects(&case) {
            let found = objects.iter().any(|o| {
                manifests::kind(o) == kind
                    && manifests::namespace(o) == nn.namespace
                    && manifests::name(o) == nn.name
            });
            assert!(found, "{}: {kind} {nn} is in no manifest", case.name);
        }
    }
    let listed: Vec<&str> = index.tests.iter().map(|e| e.name.as_str()).collect();
    for file in std::fs::read_dir(data_dir().join("cases")).unwrap() {
        let path = file.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(
            listed.contains(&stem.as_str()),
            "{} is not in suite.yaml",
            path.display()
        );
    }
}

/// Every (kind, object) a case's steps refer to.
fn named_objects(case: &model::Case) -> Vec<(String, model::NsName)> {
    use model::Step;
    let mut out: Vec<(&str, model::NsName)> = Vec::new();
    for step in &case.steps {
        match step {
            Step::RoutesAccepted(s) => {
                out.push(("Gateway", s.gateway.clone()));
                out.extend(s.routes.iter().map(|r| (s.kind.as_str(), r.clone())));
            }
            Step::RouteCondition(s) => {
                out.push((&s.kind, s.route.clone()));
                out.push(("Gateway", s.gateway.clone()));
            }
            Step::RouteParents(s) => {
                out.push((&s.kind, s.route.clone()));
                out.extend(s.parents.iter().map(|p| ("Gateway", p.gateway.clone())));
            }
            Step::RouteNoAcceptedParents(s) => out.push((&s.kind, s.route.clone())),
            Step::GatewayListeners(s) => out.push(("Gateway", s.gateway.clone())),
            Step::ListenerConditions(s) => out.push(("Gateway", s.gateway.clone())),
            Step::GatewayZeroRoutes(s) => out.push(("Gateway", s.gateway.clone())),
            Step::Http(s) => {
                out.push(("Gateway", s.gateway.clone()));
                out.extend(s.tls.iter().map(|t| ("Secret", t.secret.clone())));
                let clients = s.tls.iter().flat_map(|t| &t.client_certificate);
                out.extend(clients.map(|c| ("Secret", c.clone())));
                let expected = s.expect.iter().flat_map(|e| {
                    let from_request = e.expected_request.iter().flat_map(|r| &r.client_cert);
                    e.request.client_cert.iter().chain(from_request)
                });
                out.extend(expected.map(|c| ("Secret", c.secret.clone())));
                let mirrors = s.expect.iter().flat_map(|e| &e.mirrored_to);
                out.extend(mirrors.map(|m| ("Deployment", m.deployment())));
            }
            Step::WeightedDistribution(s) => out.push(("Gateway", s.gateway.clone())),
            Step::Grpc(s) => out.push(("Gateway", s.gateway.clone())),
            Step::GrpcWeightedDistribution(s) => out.push(("Gateway", s.gateway.clone())),
            Step::BackendHeaderNamesPod(s) => out.push(("Gateway", s.gateway.clone())),
            Step::WebSocket(s) => out.push(("Gateway", s.gateway.clone())),
            Step::FillEndpointSlices(f) => {
                out.extend(f.slices.iter().map(|s| ("EndpointSlice", s.clone())));
            }
            Step::Delete(r) | Step::LatestConditions(r) => out.push((&r.kind, r.ns_name())),
            Step::Patch(p) => {
                out.push((&p.object.kind, p.object.ns_name()));
                out.extend(
                    p.copy
                        .values()
                        .map(|c| (c.from.kind.as_str(), c.from.ns_name())),
                );
            }
            Step::Create(c) => {
                out.extend(
                    c.copy
                        .values()
                        .map(|c| (c.from.kind.as_str(), c.from.ns_name())),
                );
            }
            Step::ObjectCondition(c) => out.push((&c.object.kind, c.object.ns_name())),
            Step::BackendTlsPolicyCondition(c) => {
                out.push(("BackendTLSPolicy", c.policy.clone()));
                out.push(("Gateway", c.gateway.clone()));
            }
            Step::NamespacesReady(_) => {}
            Step::AttachedListenerSets(s) => out.push(("Gateway", s.gateway.clone())),
            Step::ListenerSetListeners(s) => out.push(("ListenerSet", s.listener_set.clone())),
            Step::ListenerSetListenerConditions(s) => {
                out.push(("ListenerSet", s.listener_set.clone()));
            }
            Step::GatewayAddresses(s) => out.push(("Gateway", s.gateway.clone())),
            Step::Tcp(s) => {
                out.push(("Gateway", s.gateway.clone()));
                if let Some(tls) = &s.tls {
                    out.extend(tls.secret.iter().map(|nn| ("Secret", nn.clone())));
                    out.extend(tls.ca_config_map.iter().map(|nn| ("ConfigMap", nn.clone())));
                }
            }
            Step::TlsRejected(s) => out.push(("Gateway", s.gateway.clone())),
            Step::ListenerSetRoutesAccepted(s) => {
                out.push(("ListenerSet", s.listener_set.clone()));
                out.extend(s.routes.iter().map(|r| ("HTTPRoute", r.clone())));
            }
        }
    }
    out.into_iter()
        .map(|(kind, nn)| (kind.to_string(), nn))
        .collect()
}
