//! What each kind of [`Step`] does, on a running [`Replay`].

use serde_json::Value;

use std::collections::BTreeMap;

use crate::addresses;
use crate::grpc;
use crate::manifests::{self, Pod};
use crate::mirror;
use crate::model::{CopiedValue, ObjectRef, Step};
use crate::roundtrip::{
    await_convergence, expect_eventually, expect_failure, expect_http_error, round_trip,
};
use crate::runner::Replay;
use crate::status;
use crate::tcp;
use crate::websocket;
use crate::weight;

impl Replay {
    /// Runs one step; `config` is the case's current objects (mutating steps rewrite the
    /// case file from it).
    pub(crate) async fn run_step(
        &mut self,
        step: &Step,
        config: &mut Vec<Value>,
    ) -> Result<(), String> {
        match step {
            Step::RoutesAccepted(s) => self.poll(|d| status::routes_accepted(d, s)).await,
            Step::RouteCondition(s) => {
                self.poll(|d| {
                    status::route_condition(d, &s.kind, &s.route, &s.gateway, &s.condition)
                })
                .await
            }
            Step::RouteParents(s) => self.poll(|d| status::route_parents(d, s)).await,
            Step::RouteNoAcceptedParents(s) => {
                let mut empty_seen = false;
                self.poll(|d| {
                    status::route_no_accepted_parents(d, &s.kind, &s.route, &mut empty_seen)
                })
                .await
            }
            Step::GatewayListeners(s) => self.poll(|d| status::gateway_listeners(d, s)).await,
            Step::ListenerConditions(s) => self.poll(|d| status::listener_conditions(d, s)).await,
            Step::GatewayZeroRoutes(s) => {
                self.poll(|d| status::gateway_zero_routes(d, &s.gateway))
                    .await
            }
            Step::Http(s) => {
                let target = self
                    .target(&s.gateway, s.listener.as_deref(), s.tls.as_ref())
                    .await?;
                let expectations = s
                    .expect
                    .iter()
                    .map(|exp| self.with_client_certs(exp))
                    .collect::<Result<Vec<_>, _>>()?;
                let replay = &*self;
                let checks = expectations.iter().enumerate().map(|(i, exp)| {
                    // Upstream records per call whether the server asked for the client
                    // certificate.
                    let target = target.with_fresh_client_record();
                    async move {
                        let outcome = if s.expect_failure {
                            expect_failure(&target, exp).await
                        } else if s.expect_http_error {
                            expect_http_error(&target, exp, replay.max_time).await
                        } else {
                            mirror::expect_response_and_mirrors(
                                &replay.env,
                                &replay.pods,
                                replay.max_time,
                                &target,
                                exp,
                            )
                            .await
                        };
                        outcome
                            .and_then(|()| target.client_certificate_presented())
                            .map_err(|e| format!("[{}] {e}", exp.display_name(i)))
                    }
                });
                let failures: Vec<String> = futures::future::join_all(checks)
                    .await
                    .into_iter()
                    .filter_map(Result::err)
                    .collect();
                if failures.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{}/{} expectations failed: {}",
                        failures.len(),
                        s.expect.len(),
                        failures.join("; ")
                    ))
                }
            }
            Step::WeightedDistribution(s) => {
                let target = self.target(&s.gateway, None, None).await?;
                expect_eventually(&target, &s.expect, self.max_time).await?;
                let mut last = String::new();
                for _ in 0..weight::MAX_TEST_RETRIES {
                    match weight::sample(&target, &s.expect).await {
                        Ok(pods) => match weight::check_distribution(&pods, &s.weights) {
                            Ok(()) => return Ok(()),
                            Err(e) => last = e,
                        },
                        Err(e) => last = e,
                    }
                }
                Err(format!(
                    "weighted distribution failed {} times, last: {last}",
                    weight::MAX_TEST_RETRIES
                ))
            }
            Step::Grpc(s) => {
                let target = self.target(&s.gateway, s.listener.as_deref(), None).await?;
                grpc::expect_all_eventually(&target, &s.expect, self.max_time).await
            }
            Step::GrpcWeightedDistribution(s) => {
                let target = self.target(&s.gateway, None, None).await?;
                grpc::expect_eventually(&target, &s.expect, self.max_time).await?;
                let mut last = String::new();
                for _ in 0..weight::MAX_TEST_RETRIES {
                    match grpc::sample(&target, &s.expect, self.max_time).await {
                        Ok(pods) => match weight::check_distribution(&pods, &s.weights) {
                            Ok(()) => return Ok(()),
                            Err(e) => last = e,
                        },
                        Err(e) => last = e,
                    }
                }
                Err(format!(
                    "weighted distribution failed {} times, last: {last}",
                    weight::MAX_TEST_RETRIES
                ))
            }
            Step::BackendHeaderNamesPod(s) => {
                let target = self.target(&s.gateway, None, None).await?;
                expect_eventually(&target, &s.expect, self.max_time).await?;
                for _ in 0..s.requests {
                    let echo = round_trip(&target, &s.expect, &[]).await?.echo;
                    let named = match echo.header(&s.header) {
                        Some([one]) => one.clone(),
                        other => {
                            return Err(format!(
                                "expected a single {:?} header to have been set, got {other:?}",
                                s.header
                            ));
                        }
                    };
                    if !echo.pod.starts_with(&named) {
                        return Err(format!(
                            "the backendRef's filter named {named:?} but pod {:?} answered",
                            echo.pod
                        ));
                    }
                }
                Ok(())
            }
            Step::Delete(r) => {
                let before = config.len();
                config.retain(|o| !is_object(o, r));
                if config.len() == before {
                    return Err(format!("no {r} among the case's objects"));
                }
                self.write_case(config)
            }
            Step::Patch(p) => {
                let copied = self.copied_values(config, &p.copy)?;
                let object = find_object(config, &p.object)?;
                manifests::remove_values(object, &p.remove)
                    .and_then(|()| manifests::patch(object, &p.set))
                    .and_then(|()| manifests::set_values(object, &copied))
                    .map_err(|e| format!("{}: {e}", p.object))?;
                self.write_case(config)
            }
            Step::Create(c) => {
                let mut object = c.object.clone();
                let kind = manifests::kind(&object);
                // Objects that need more than a file (an address, echo processes) are
                // made only from the case's manifests.
                if !manifests::is_config_kind(kind) || kind == "Gateway" {
                    return Err(format!("cannot create a {kind:?} mid-case"));
                }
                let r = object_ref(&object);
                if config.iter().any(|o| is_object(o, &r)) {
                    return Err(format!("{r} exists already"));
                }
                manifests::prepare(std::slice::from_mut(&mut object));
                let copied = self.copied_values(config, &c.copy)?;
                manifests::set_values(&mut object, &copied).map_err(|e| format!("{r}: {e}"))?;
                config.push(object);
                self.write_case(config)
            }
            Step::BackendTlsPolicyCondition(c) => {
                self.poll(|d| status::policy_condition(d, c)).await
            }
            Step::LatestConditions(r) => {
                let generation = manifests::generation(find_object(config, r)?);
                self.poll(|d| status::latest_conditions(d, r, generation))
                    .await
            }
            Step::ObjectCondition(c) => {
                self.poll(|d| status::object_condition(d, &c.object, &c.condition))
                    .await
            }
            Step::FillEndpointSlices(f) => {
                let pods: Vec<&Pod> = self
                    .pods
                    .iter()
                    .filter(|p| {
                        p.namespace == f.deployment.namespace && p.deployment == f.deployment.name
                    })
                    .collect();
                if pods.is_empty() {
                    return Err(format!("Deployment {} has no echo pods", f.deployment));
                }
                for nn in &f.slices {
                    let slice = ObjectRef {
                        kind: "EndpointSlice".into(),
                        namespace: nn.namespace.clone(),
                        name: nn.name.clone(),
                    };
                    manifests::fill_endpoint_slice(find_object(config, &slice)?, &pods);
                }
                self.write_case(config)
            }
            Step::WebSocket(s) => {
                let target = self.target(&s.gateway, s.listener.as_deref(), None).await?;
                await_convergence(self.max_time, async || {
                    websocket::round_trip(&target, &s.path, &s.messages).await
                })
                .await
            }
            Step::NamespacesReady(namespaces) => {
                self.poll(|d| status::namespaces_ready(d, namespaces)).await
            }
            Step::AttachedListenerSets(s) => {
                self.poll(|d| status::attached_listener_sets(d, s)).await
            }
            Step::ListenerSetListeners(s) => {
                self.poll(|d| status::listener_set_listeners(d, s)).await
            }
            Step::ListenerSetListenerConditions(s) => {
                self.poll(|d| status::listener_set_listener_conditions(d, s))
                    .await
            }
            Step::ListenerSetRoutesAccepted(s) => {
                self.poll(|d| status::listener_set_routes_accepted(d, s))
                    .await
            }
            Step::GatewayAddresses(s) => {
                let pools = self.address_pools.clone();
                self.poll(|d| addresses::gateway_addresses(d, s, &pools))
                    .await
            }
            Step::Tcp(s) => {
                let target = self.target(&s.gateway, s.listener.as_deref(), None).await?;
                let addr = format!("{}:{}", target.ip, target.port);
                let tls = s.tls.as_ref().map(|t| self.tcp_client_tls(t)).transpose()?;
                tcp::eventually_valid(&addr, tls.as_ref(), &s.expect, self.max_time).await
            }
            Step::TlsRejected(s) => {
                let target = self.target(&s.gateway, s.listener.as_deref(), None).await?;
                let addr = format!("{}:{}", target.ip, target.port);
                tcp::eventually_rejected(&addr, &s.server_name, self.max_time).await
            }
        }
    }
}

impl Replay {
    /// The values `copy` points at, in the case's objects or the base's.
    fn copied_values(
        &self,
        config: &[Value],
        copy: &BTreeMap<String, CopiedValue>,
    ) -> Result<BTreeMap<String, Value>, String> {
        copy.iter()
            .map(|(pointer, source)| {
                let from = config
                    .iter()
                    .chain(&self.base_config)
                    .find(|o| is_object(o, &source.from))
                    .ok_or_else(|| format!("no {} to copy from", source.from))?;
                let value = from
                    .pointer(&source.pointer)
                    .ok_or_else(|| format!("{} has nothing at {}", source.from, source.pointer))?;
                Ok((pointer.clone(), value.clone()))
            })
            .collect()
    }
}

fn object_ref(object: &Value) -> ObjectRef {
    ObjectRef {
        kind: manifests::kind(object).to_string(),
        namespace: manifests::namespace(object).to_string(),
        name: manifests::name(object).to_string(),
    }
}

pub(crate) fn is_object(object: &Value, r: &ObjectRef) -> bool {
    manifests::kind(object) == r.kind
        && manifests::namespace(object) == r.namespace
        && manifests::name(object) == r.name
}

fn find_object<'a>(config: &'a mut [Value], r: &ObjectRef) -> Result<&'a mut Value, String> {
    config
        .iter_mut()
        .find(|o| is_object(o, r))
        .ok_or_else(|| format!("no {r} among the case's objects"))
}

pub fn step_name(step: &Step) -> &'static str {
    match step {
        Step::RoutesAccepted(_) => "routesAccepted",
        Step::RouteCondition(_) => "routeCondition",
        Step::RouteParents(_) => "routeParents",
        Step::RouteNoAcceptedParents(_) => "routeNoAcceptedParents",
        Step::GatewayListeners(_) => "gatewayListeners",
        Step::ListenerConditions(_) => "listenerConditions",
        Step::GatewayZeroRoutes(_) => "gatewayZeroRoutes",
        Step::Http(_) => "http",
        Step::WeightedDistribution(_) => "weightedDistribution",
        Step::Grpc(_) => "grpc",
        Step::GrpcWeightedDistribution(_) => "grpcWeightedDistribution",
        Step::BackendHeaderNamesPod(_) => "backendHeaderNamesPod",
        Step::Delete(_) => "delete",
        Step::Patch(_) => "patch",
        Step::LatestConditions(_) => "latestConditions",
        Step::ObjectCondition(_) => "objectCondition",
        Step::FillEndpointSlices(_) => "fillEndpointSlices",
        Step::WebSocket(_) => "websocket",
        Step::NamespacesReady(_) => "namespacesReady",
        Step::BackendTlsPolicyCondition(_) => "backendTLSPolicyCondition",
        Step::Create(_) => "create",
        Step::AttachedListenerSets(_) => "attachedListenerSets",
        Step::ListenerSetListeners(_) => "listenerSetListeners",
        Step::ListenerSetListenerConditions(_) => "listenerSetListenerConditions",
        Step::ListenerSetRoutesAccepted(_) => "listenerSetRoutesAccepted",
        Step::GatewayAddresses(_) => "gatewayAddresses",
        Step::Tcp(_) => "tcp",
        Step::TlsRejected(_) => "tlsRejected",
    }
}
