//! The replay's data: the suite index (`tests/conformance/suite.yaml`) and the case files
//! (`tests/conformance/cases/<ShortName>.yaml`), each a port of one upstream Go test.
//!
//! Field names follow the upstream Go types (`http.ExpectedResponse`, `metav1.Condition`,
//! `v1.ListenerStatus`) in camelCase, so a case reads side by side with its Go source.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// `tests/conformance/suite.yaml`: every GATEWAY-HTTP, -GRPC and -TLS test of the release, each
/// either replayed from `cases/<name>.yaml` or skipped with a written reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SuiteIndex {
    /// The Gateway API release the cases were ported from, e.g. `v1.5.1`.
    pub gateway_api_version: String,
    pub tests: Vec<IndexEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// The upstream `ShortName`.
    pub name: String,
    /// Why the test is not replayed (yet); absent means `cases/<name>.yaml` runs.
    #[serde(default)]
    pub skip: Option<String>,
}

/// One upstream conformance test as data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    /// The upstream `ShortName`; equals the file stem.
    pub name: String,
    /// The Go file it was ported from, e.g. `conformance/tests/httproute-matching.go`.
    pub upstream: String,
    /// Manifests applied for the test, relative to the release's `conformance/` directory.
    pub manifests: Vec<String>,
    pub steps: Vec<Step>,
}

/// One assertion (or mutation) of a case, run in order. Status assertions poll until they
/// hold or the convergence deadline passes, like upstream's `wait.PollUntilContextTimeout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Step {
    /// `kubernetes.GatewayAndHTTPRoutesMustBeAccepted`.
    RoutesAccepted(RoutesAccepted),
    /// `kubernetes.HTTPRouteMustHaveCondition` (and `...ResolvedRefsConditionsTrue`).
    RouteCondition(RouteCondition),
    /// `kubernetes.HTTPRouteMustHaveParents`.
    RouteParents(RouteParents),
    /// `kubernetes.HTTPRouteMustHaveNoAcceptedParents`.
    RouteNoAcceptedParents(RouteOnly),
    /// `kubernetes.GatewayStatusMustHaveListeners`.
    GatewayListeners(GatewayListeners),
    /// `kubernetes.GatewayListenerMustHaveConditions`.
    ListenerConditions(ListenerConditions),
    /// `kubernetes.GatewayMustHaveZeroRoutes`.
    GatewayZeroRoutes(GatewayOnly),
    /// `http.MakeRequestAndExpectEventuallyConsistentResponse`, once per expectation.
    Http(HttpStep),
    /// `weight.TestWeightedDistribution` after one consistent response.
    WeightedDistribution(WeightStep),
    /// `grpc.MakeRequestAndExpectEventuallyConsistentResponse`, once per expectation.
    Grpc(GrpcStep),
    /// `weight.TestWeightedDistribution` over gRPC calls (`grpc.AddEntropy`,
    /// `SendRPC`), after one consistent response.
    GrpcWeightedDistribution(GrpcWeightStep),
    /// Every response names its backend in a request header the route set (the
    /// backend-weights test): the header's value must prefix the pod name.
    BackendHeaderNamesPod(HeaderNamesPodStep),
    /// Deletes one object of the case's manifests (upstream `suite.Client.Delete`).
    Delete(ObjectRef),
    /// Changes an object of the case in place (upstream `suite.Client.Patch`); the replay
    /// bumps its `metadata.generation` like the API server would.
    Patch(PatchStep),
    /// `GatewayMustHaveLatestConditions` and friends: the controller has seen the object's
    /// current generation and every condition carries it as `observedGeneration`.
    LatestConditions(ObjectRef),
    /// A condition in the object's own `status.conditions` (`GatewayMustHaveCondition`,
    /// `GWCMustHaveAcceptedConditionAny`).
    ObjectCondition(ObjectCondition),
    /// Fills hand-written EndpointSlices of the case with the pods of a Deployment
    /// (upstream's `setupEndpointSlices` in the service-types test).
    FillEndpointSlices(FillEndpointSlices),
    /// `http.AwaitConvergence` around `websocket.Dial` and message round trips (the
    /// backend-protocol WebSocket test).
    #[serde(rename = "websocket")]
    WebSocket(WebSocketStep),
    /// `kubernetes.NamespacesMustBeReady`: every Gateway in these namespaces has current,
    /// Accepted and Programmed conditions (the echo pods are always ready).
    NamespacesReady(Vec<String>),
    /// `kubernetes.BackendTLSPolicyMustHaveCondition` (and `...AcceptedConditionTrue`).
    #[serde(rename = "backendTLSPolicyCondition")]
    BackendTlsPolicyCondition(PolicyCondition),
    /// Adds an object to the case mid-test (upstream's `MustApplyObjectsWithCleanup`); it
    /// goes when the case does.
    Create(CreateStep),
    /// `kubernetes.GatewayMustHaveAttachedListeners`: the Gateway's conditions are current
    /// and its `status.attachedListenerSets` (absent: 0) is `count`.
    AttachedListenerSets(AttachedListenerSets),
    /// `kubernetes.ListenerSetStatusMustHaveListeners`, compared like
    /// `listenerSetListenersMatch` (the same as a Gateway's listeners).
    ListenerSetListeners(ListenerSetListeners),
    /// `kubernetes.ListenerSetListenersMustHaveConditions` for one listener name.
    ListenerSetListenerConditions(ListenerSetListenerConditions),
    /// `kubernetes.RoutesAndParentMustBeAccepted` with a ListenerSet `ResourceRef`.
    ListenerSetRoutesAccepted(ListenerSetRoutesAccepted),
    /// The Gateway's conditions are current and its `status.addresses` has every
    /// `includes` entry and none of the `excludes` values (GatewayStaticAddresses' checks;
    /// `kubernetes.WaitForGatewayAddress` is `includes: [{}]`).
    GatewayAddresses(GatewayAddresses),
    /// `tcp.MakeTCPRequestAndExpectEventuallyValidResponse`: a connection (over TLS when
    /// `tls` is given) gets echo-basic's TCP test server's welcome, `PONG`, the expected
    /// `IS_TLS` and a `TEST` answer from the expected backend.
    Tcp(TcpStep),
    /// `tls.MakeTLSConnectionAndExpectEventuallyConnectionRejection`: a TLS handshake with
    /// this server name ends with the connection closed or reset (not a TLS alert).
    #[serde(rename = "tlsRejected")]
    TlsRejected(TlsRejectedStep),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpStep {
    pub gateway: NsName,
    /// Which listener's port to use (default: the first listener's).
    #[serde(default)]
    pub listener: Option<String>,
    /// TLS to the gateway; plain TCP when absent.
    #[serde(default)]
    pub tls: Option<TcpTls>,
    pub expect: TcpExpectation,
}

/// The client side of a TLS connection to a TLS listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpTls {
    /// The SNI, and the name the certificate must be valid for.
    pub server_name: String,
    /// A server certificate Secret of the suite's setup: its certificate is the only one
    /// trusted (upstream's `GetTLSSecret` PEM as the root pool).
    #[serde(default)]
    pub secret: Option<NsName>,
    /// A CA ConfigMap of the suite's setup: its `ca.crt` is the root the server's chain
    /// must verify against (upstream's `GetConfigMapData(...)["ca.crt"]`).
    #[serde(default)]
    pub ca_config_map: Option<NsName>,
}

/// Upstream's `tcp.ExpectedResponse`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpExpectation {
    /// What `IS_TLS` must answer: whether the backend itself did the TLS handshake.
    pub backend_is_tls: bool,
    /// The pod name's prefix (`<backend>-`).
    pub backend: String,
    pub namespace: String,
    /// The SNI the backend must have seen (`tls.serverName`); not checked when empty.
    #[serde(default)]
    pub hostname: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsRejectedStep {
    pub gateway: NsName,
    #[serde(default)]
    pub listener: Option<String>,
    pub server_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayAddresses {
    pub gateway: NsName,
    #[serde(default)]
    pub includes: Vec<ExpectedAddress>,
    /// Values no address may have.
    #[serde(default)]
    pub excludes: Vec<String>,
}

/// A `status.addresses` entry. An empty `type` matches any type, but one must be set
/// (upstream's `address.Type != nil`); an empty `value` matches any value. A value may be
/// an address placeholder of the manifests (`PLACEHOLDER_USABLE_ADDRS`,
/// `PLACEHOLDER_UNUSABLE_ADDRS`), standing for the address the replay put there.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAddress {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AttachedListenerSets {
    pub gateway: NsName,
    pub count: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerSetListeners {
    pub listener_set: NsName,
    pub listeners: Vec<ExpectedListener>,
}

/// Conditions one listener of a ListenerSet must have, whatever else it says.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerSetListenerConditions {
    pub listener_set: NsName,
    pub listener: String,
    pub conditions: Vec<ExpectedCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerSetRoutesAccepted {
    pub listener_set: NsName,
    /// Each must have an Accepted parent naming the ListenerSet (group, kind, name, and
    /// namespace unless the route is in the set's own namespace).
    pub routes: Vec<NsName>,
}

/// A condition on a BackendTLSPolicy's `status.ancestors[]` entry for one Gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyCondition {
    pub policy: NsName,
    /// The ancestor: upstream matches `ancestorRef.name`, and `ancestorRef.namespace` when
    /// it is set.
    pub gateway: NsName,
    pub condition: ExpectedCondition,
}

/// A new object of the case, with data copied from others into it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateStep {
    /// The manifest, as a case's manifests would have it.
    pub object: serde_json::Value,
    /// JSON pointer in `object` → a value of another object (see [`CopiedValue`]).
    #[serde(default)]
    pub copy: BTreeMap<String, CopiedValue>,
}

/// A value of an object of the run (the base, the setup's certificates, or the case), for
/// data the replay makes up at run time: upstream reads a setup ConfigMap's `ca.crt` to
/// write it elsewhere.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopiedValue {
    pub from: ObjectRef,
    /// JSON pointer in `from`.
    pub pointer: String,
}

/// A WebSocket handshake to `path` on a Gateway listener, then each message sent in turn
/// and the same payload expected back, on a fresh connection per attempt.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebSocketStep {
    pub gateway: NsName,
    #[serde(default)]
    pub listener: Option<String>,
    pub path: String,
    pub messages: Vec<WebSocketMessage>,
}

/// One message of a [`WebSocketStep`]: `websocket.Message.Send` of a string (a text frame)
/// or of a byte slice (a binary frame).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum WebSocketMessage {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FillEndpointSlices {
    pub deployment: NsName,
    pub slices: Vec<NsName>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoutesAccepted {
    pub gateway: NsName,
    /// Upstream names listeners here (`NewGatewayRef(gw, "listener-1")`) but compares
    /// parents without their section names, so a case names only the Gateway.
    pub routes: Vec<NsName>,
    /// The routes' kind: `HTTPRoute` (the default), `GRPCRoute` (upstream's
    /// `GatewayAndRoutesMustBeAccepted` with `&v1.GRPCRoute{}`) or `TLSRoute`
    /// (`GatewayAndTLSRoutesMustBeAccepted`).
    #[serde(default = "http_route")]
    pub kind: String,
}

fn http_route() -> String {
    "HTTPRoute".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteCondition {
    pub route: NsName,
    pub gateway: NsName,
    pub condition: ExpectedCondition,
    /// The route's kind: `HTTPRoute` (the default), `GRPCRoute` or `TLSRoute`.
    #[serde(default = "http_route")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteParents {
    pub route: NsName,
    pub parents: Vec<ExpectedParent>,
    /// Whether a parentRef without namespace fails to match (upstream's argument).
    pub namespace_required: bool,
    /// The route's kind: `HTTPRoute` (the default), `GRPCRoute` or `TLSRoute`.
    #[serde(default = "http_route")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectedParent {
    /// Expected as `parentRefTo(gateway)`: group and kind set, namespace set.
    pub gateway: NsName,
    pub conditions: Vec<ExpectedCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOnly {
    pub route: NsName,
    /// The route's kind: `HTTPRoute` (the default), `GRPCRoute` or `TLSRoute`.
    #[serde(default = "http_route")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayOnly {
    pub gateway: NsName,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayListeners {
    pub gateway: NsName,
    pub listeners: Vec<ExpectedListener>,
}

/// Conditions one listener's status must include, whatever else it says.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerConditions {
    pub gateway: NsName,
    pub listener: String,
    pub conditions: Vec<ExpectedCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectedListener {
    pub name: String,
    #[serde(default)]
    pub supported_kinds: Vec<ExpectedKind>,
    pub attached_routes: i64,
    #[serde(default)]
    pub conditions: Vec<ExpectedCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedKind {
    /// Defaults to `gateway.networking.k8s.io` on both sides, like upstream.
    #[serde(default)]
    pub group: Option<String>,
    pub kind: String,
}

/// A `metav1.Condition` to find: an empty status or reason matches any.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCondition {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpStep {
    pub gateway: NsName,
    /// Which listener's port to use (upstream takes the first listener's, or the first of
    /// `NewGatewayRef`'s names).
    #[serde(default)]
    pub listener: Option<String>,
    /// HTTPS instead of HTTP (upstream's `tls.MakeTLSRequestAndExpectEventuallyConsistentResponse`).
    #[serde(default)]
    pub tls: Option<TlsRequest>,
    /// Upstream's `tls.MakeTLSRequestAndExpectFailureResponse` instead: each request is
    /// sent once and must get no response (the handshake or the exchange fails). Needs
    /// `tls`; of an expectation only `request` counts.
    #[serde(default)]
    pub expect_failure: bool,
    /// Upstream's `http.MakeRequestAndExpectFailure` instead: each request must get a
    /// response other than 200 (and not a timeout, 408 or 504) five times in a row; a 200
    /// fails the step at once, a request that gets no response starts the count again. Of
    /// an expectation only `request` counts.
    #[serde(default)]
    pub expect_http_error: bool,
    pub expect: Vec<Expectation>,
}

/// How the requests of an [`HttpStep`] go over TLS: upstream's `serverCertificate` (read
/// with `GetTLSSecret`) and `serverName` arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsRequest {
    /// A `kubernetes.io/tls` Secret of the suite's setup: its certificate is the only one
    /// the client trusts.
    pub secret: NsName,
    /// The SNI, and the name the certificate must be valid for; each request's host when
    /// absent.
    #[serde(default)]
    pub server_name: Option<String>,
    /// A client certificate Secret of the suite's setup, presented when the server asks
    /// (upstream's `clientCertificate` and `clientCertificateKey`); the server must ask.
    #[serde(default)]
    pub client_certificate: Option<NsName>,
}

impl TlsRequest {
    /// The server name of a request to `host` (upstream refuses an HTTPS request without one).
    pub fn server_name_for<'a>(&'a self, host: &'a str) -> Result<&'a str, String> {
        match self.server_name.as_deref().unwrap_or(host) {
            "" => Err("https request has no server name configured".into()),
            name => Ok(name),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcStep {
    pub gateway: NsName,
    /// Which listener's port to use (default: the first).
    #[serde(default)]
    pub listener: Option<String>,
    pub expect: Vec<GrpcExpectation>,
}

/// Upstream's `grpc.ExpectedResponse` in camelCase: the method called (`EchoRequest`,
/// `EchoTwoRequest` or `EchoThreeRequest` set), `requestMetadata {authority, metadata}`,
/// `response.code`, and for an OK reply the pod-name prefix (`backend`) and `namespace`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcExpectation {
    /// `Echo`, `EchoTwo` or `EchoThree`.
    pub method: GrpcMethod,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// A gRPC code name as grpc-go spells it (`OK`, `Unimplemented`, ...); default OK.
    #[serde(default = "grpc_ok")]
    pub code: String,
    /// The answering pod's name must start with this (an empty one matches any).
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum GrpcMethod {
    Echo,
    EchoTwo,
    EchoThree,
}

fn grpc_ok() -> String {
    "OK".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcWeightStep {
    pub gateway: NsName,
    pub expect: GrpcExpectation,
    /// Backend (Deployment) name → expected share of 500 calls, ±0.05.
    pub weights: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeightStep {
    pub gateway: NsName,
    pub expect: Expectation,
    /// Backend (Deployment) name → expected share of 500 requests, ±0.05.
    pub weights: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderNamesPodStep {
    pub gateway: NsName,
    pub expect: Expectation,
    pub header: String,
    pub requests: u32,
}

/// An object by kind and name; `namespace` is empty for cluster-scoped kinds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn ns_name(&self) -> NsName {
        NsName {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchStep {
    pub object: ObjectRef,
    /// JSON pointers removed first (an array element shifts the ones after it).
    #[serde(default)]
    pub remove: Vec<String>,
    /// JSON pointer → new value; a pointer ending in `/-` appends to an array.
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// JSON pointer → a value of another object, set after `set`.
    #[serde(default)]
    pub copy: BTreeMap<String, CopiedValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectCondition {
    pub object: ObjectRef,
    pub condition: ExpectedCondition,
}

/// `http.ExpectedResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expectation {
    /// Upstream's `TestCaseName`; generated like `GetTestCaseName` when absent.
    #[serde(default)]
    pub name: Option<String>,
    pub request: Request,
    /// What the backend must see; absent means "the request as sent".
    #[serde(default)]
    pub expected_request: Option<ExpectedRequest>,
    /// Sent as `X-Echo-Set-Header` so the echo server sets them on its response.
    #[serde(default)]
    pub backend_set_response_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub response: ExpectedHttpResponse,
    /// Upstream's `RedirectRequest`: compared when the response is a redirect.
    #[serde(default)]
    pub redirect: Option<ExpectedRedirect>,
    /// Pod name prefix of the backend that must answer a 200.
    #[serde(default)]
    pub backend: String,
    /// Namespace the answering backend must report on a 200.
    #[serde(default)]
    pub namespace: String,
    /// Deployments that must get a copy of the request (the `RequestMirror` filter).
    #[serde(default)]
    pub mirrored_to: Vec<MirroredBackend>,
}

/// `http.MirroredBackend`: an echo Deployment whose pods log the mirrored request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MirroredBackend {
    /// The Deployment (upstream reads the logs of the pods labelled `app: <name>`).
    pub name: String,
    pub namespace: String,
    /// The share of requests mirrored, 0 to 100. Without it one mirrored request must show
    /// up (`ExpectMirroredRequest`); with it a batch of requests is sent and the share
    /// counted (the percentage-mirror test).
    #[serde(default)]
    pub percent: Option<u32>,
}

impl MirroredBackend {
    pub fn deployment(&self) -> NsName {
        NsName {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// `http.Request`: empty host means the Gateway address, empty method means GET. The path
/// may carry a query (`/?animal=whale`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Request {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Upstream's `Request.Protocol`; absent means HTTP/1.1.
    #[serde(default)]
    pub protocol: Option<RequestProtocol>,
    /// Upstream's `Request.SNI`: not sent (a step's `tls.serverName` is), but without an
    /// `expectedRequest` the backend must have seen it as its TLS server name.
    #[serde(default)]
    pub sni: String,
    /// Upstream's `Request.ClientCert`: likewise only compared, without an
    /// `expectedRequest`.
    #[serde(default)]
    pub client_cert: Option<ClientCert>,
}

/// Upstream's `ClientCert`: the PEM of a certificate the backend must have been presented
/// over TLS (among the echo's `tls.peerCertificates`). Case files name the client
/// certificate Secret of the suite's setup whose `tls.crt` it is (upstream reads it with
/// `GetTLSSecret`); the replay fills in the PEM before the step runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCert {
    pub secret: NsName,
    /// `tls.crt` of `secret`, once resolved.
    pub pem: Option<String>,
}

impl<'de> Deserialize<'de> for ClientCert {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ClientCert {
            secret: NsName::deserialize(d)?,
            pem: None,
        })
    }
}

/// The `roundtripper` protocols a case may ask for instead of HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestProtocol {
    /// `roundtripper.H2CPriorKnowledgeProtocol`: cleartext HTTP/2 without an upgrade.
    #[serde(rename = "H2C_PRIOR_KNOWLEDGE")]
    H2cPriorKnowledge,
    /// `roundtripper.H2Protocol`: HTTP/2 over TLS (ALPN `h2`), in steps with `tls` only.
    #[serde(rename = "H2")]
    H2,
}

/// `http.ExpectedRequest`. Unlike upstream, an omitted path means the request's path (most
/// upstream cases that set an ExpectedRequest spell the same path out); upstream's explicit
/// empty path (a CORS preflight the gateway answers itself) is written `path: ""`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectedRequest {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub path: Option<String>,
    /// Header → comma-joined values; absent means "not checked".
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub absent_headers: Vec<String>,
    /// The TLS server name the backend must have seen (upstream's `SNI`); empty: any.
    #[serde(default)]
    pub sni: String,
    /// A certificate the backend must have been presented (upstream's `ClientCert`).
    #[serde(default)]
    pub client_cert: Option<ClientCert>,
}

/// `http.Response`: no status codes means 200.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectedHttpResponse {
    #[serde(default)]
    pub status_codes: Vec<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Header → the comma-joined values any one of which will do.
    #[serde(default)]
    pub valid_header_values: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub absent_headers: Vec<String>,
    /// Compare `headers` and `validHeaderValues` with every space removed from both sides.
    #[serde(default)]
    pub ignore_whitespace: bool,
}

/// `roundtripper.RedirectRequest`: empty fields default like `setRedirectRequestDefaults`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectedRedirect {
    #[serde(default)]
    pub scheme: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: String,
    #[serde(default)]
    pub path: String,
}

impl Expectation {
    /// The status codes that count as success (upstream: `[200]` unless given).
    pub fn status_codes(&self) -> Vec<u16> {
        if self.response.status_codes.is_empty() {
            vec![200]
        } else {
            self.response.status_codes.clone()
        }
    }

    /// Upstream's `GetTestCaseName`, with the index of the expectation in its step.
    pub fn display_name(&self, index: usize) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let with_headers = if self.request.headers.is_empty() {
            ""
        } else {
            " with headers"
        };
        let req = format!(
            "{index} request to '{}{}'{with_headers}",
            self.request.host, self.request.path
        );
        if self.backend.is_empty() {
            format!("{req} should receive one of {:?}", self.status_codes())
        } else {
            format!("{req} should go to {}", self.backend)
        }
    }
}

/// `namespace/name`, written as one string in case files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NsName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for NsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for NsName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(NsName {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("expected `namespace/name`, got {s:?}")),
        }
    }
}

impl<'de> Deserialize<'de> for NsName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses YAML through `serde_json::Value`, so enums read as single-key maps
/// (`- http: {...}`) regardless of serde_yaml's tag conventions.
pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    let value: serde_json::Value = serde_yaml::from_str(text)?;
    Ok(serde_json::from_value(value)?)
}

pub fn load_index(dir: &Path) -> anyhow::Result<SuiteIndex> {
    let path = dir.join("suite.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let index: SuiteIndex =
        from_yaml(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut seen = std::collections::BTreeSet::new();
    for entry in &index.tests {
        if !seen.insert(entry.name.as_str()) {
            bail!("{}: {} is listed twice", path.display(), entry.name);
        }
        if entry.skip.as_deref().is_some_and(|r| r.trim().is_empty()) {
            bail!(
                "{}: {} is skipped without a reason",
                path.display(),
                entry.name
            );
        }
    }
    Ok(index)
}

pub fn load_case(dir: &Path, name: &str) -> anyhow::Result<Case> {
    let path = dir.join("cases").join(format!("{name}.yaml"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let case: Case = from_yaml(&text).with_context(|| format!("parsing {}", path.display()))?;
    if case.name != name {
        bail!("{}: names itself {:?}", path.display(), case.name);
    }
    if case.manifests.is_empty() || case.steps.is_empty() {
        bail!("{}: a case needs manifests and steps", path.display());
    }
    for (i, step) in case.steps.iter().enumerate() {
        if let Step::Http(http) = step {
            check_protocols(http).with_context(|| format!("{}: step {}", path.display(), i + 1))?;
        }
    }
    Ok(case)
}

/// Each request's protocol fits the step's transport, as `roundtripper` demands: h2c
/// without TLS, H2 with it, and a server name for every HTTPS request. An expected failure
/// is over TLS, like upstream's, and mirrors nothing.
fn check_protocols(step: &HttpStep) -> anyhow::Result<()> {
    if step.expect_failure && step.tls.is_none() {
        bail!("expectFailure needs `tls`");
    }
    if step.expect_failure && step.expect_http_error {
        bail!("expectFailure and expectHttpError are two different steps");
    }
    let failing = step.expect_failure || step.expect_http_error;
    if failing && step.expect.iter().any(|e| !e.mirrored_to.is_empty()) {
        bail!("a request expected to fail mirrors nothing: no mirroredTo");
    }
    for (i, exp) in step.expect.iter().enumerate() {
        let name = exp.display_name(i);
        match (&step.tls, exp.request.protocol) {
            (None, Some(RequestProtocol::H2)) => bail!("[{name}] protocol H2 needs `tls`"),
            (Some(_), Some(RequestProtocol::H2cPriorKnowledge)) => {
                bail!("[{name}] h2 prior knowledge is not encrypted: no `tls` with it")
            }
            (Some(tls), _) => {
                tls.server_name_for(&exp.request.host)
                    .map_err(|e| anyhow::anyhow!("[{name}] {e}"))?;
            }
            (None, _) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_step(yaml: &str) -> HttpStep {
        from_yaml(yaml).unwrap()
    }

    #[test]
    fn request_protocols_must_fit_the_step_transport() {
        let tls = "tls: {secret: ns/cert}\n";
        let ok = http_step(&format!(
            "gateway: ns/gw\n{tls}expect: [{{request: {{host: a.example, path: /, protocol: H2}}}}]"
        ));
        check_protocols(&ok).unwrap();
        let h2_in_clear = http_step("gateway: ns/gw\nexpect: [{request: {path: /, protocol: H2}}]");
        assert!(check_protocols(&h2_in_clear).is_err());
        let h2c_over_tls = http_step(&format!(
            "gateway: ns/gw\n{tls}expect: [{{request: {{host: a.example, path: /, protocol: H2C_PRIOR_KNOWLEDGE}}}}]"
        ));
        assert!(check_protocols(&h2c_over_tls).is_err());
        let nameless = http_step(&format!(
            "gateway: ns/gw\n{tls}expect: [{{request: {{path: /}}}}]"
        ));
        let err = check_protocols(&nameless).unwrap_err().to_string();
        assert!(err.contains("no server name"), "{err}");
        let named = http_step(
            "gateway: ns/gw\ntls: {secret: ns/cert, serverName: a.example}\nexpect: [{request: {path: /}}]",
        );
        check_protocols(&named).unwrap();

        let failing = |tls: &str| {
            http_step(&format!(
                "gateway: ns/gw\n{tls}expectFailure: true\nexpect: [{{request: {{host: a.example, path: /}}}}]"
            ))
        };
        check_protocols(&failing(tls)).unwrap();
        let err = check_protocols(&failing("")).unwrap_err().to_string();
        assert!(err.contains("needs `tls`"), "{err}");
        let with_client = http_step(
            "gateway: ns/gw\ntls: {secret: ns/cert, clientCertificate: ns/client}\nexpect: [{request: {host: a.example, path: /}}]",
        );
        let client = with_client.tls.unwrap().client_certificate;
        assert_eq!(client, Some("ns/client".parse().unwrap()));

        let http_error = http_step(
            "gateway: ns/gw\nexpectHttpError: true\nexpect: [{request: {host: a.example, path: /}}]",
        );
        check_protocols(&http_error).unwrap();
        let both = http_step(&format!(
            "gateway: ns/gw\n{tls}expectFailure: true\nexpectHttpError: true\nexpect: [{{request: {{host: a.example, path: /}}}}]"
        ));
        assert!(check_protocols(&both).is_err());
    }

    #[test]
    fn client_certs_name_a_secret_and_start_unresolved() {
        let exp: Expectation = from_yaml(
            "request: {path: /, sni: a.example, clientCert: ns/client}\nexpectedRequest: {sni: b.example, clientCert: ns/other}",
        )
        .unwrap();
        assert_eq!(exp.request.sni, "a.example");
        let cert = exp.request.client_cert.unwrap();
        assert_eq!(
            (cert.secret.to_string(), cert.pem),
            ("ns/client".into(), None)
        );
        let expected = exp.expected_request.unwrap();
        assert_eq!(expected.sni, "b.example");
        assert_eq!(expected.client_cert.unwrap().secret.name, "other");
        assert!(from_yaml::<Expectation>("request: {path: /, clientCert: nameless}").is_err());
    }
}
