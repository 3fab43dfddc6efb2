//! Pushing whole `http` messages through a bound filter, phase by phase.

use bytes::{Bytes, BytesMut};
use nantian_wasm::{
    ActiveFilter, Attributes, BodyAction, FilterError, HeadersAction, LocalResponse,
};

use crate::BoundFilter;

/// What became of a request.
#[derive(Debug)]
pub enum RequestOutcome {
    /// The request goes upstream like this; its body is what the filter let through.
    Forwarded(http::Request<Bytes>),
    /// The filter answered the client itself.
    Responded(http::Response<Bytes>),
}

impl RequestOutcome {
    /// The forwarded request.
    ///
    /// # Panics
    ///
    /// If the filter answered locally.
    pub fn forwarded(self) -> http::Request<Bytes> {
        match self {
            RequestOutcome::Forwarded(request) => request,
            RequestOutcome::Responded(response) => {
                panic!("expected the request to be forwarded, the filter answered {response:?}")
            }
        }
    }

    /// The filter's local response.
    ///
    /// # Panics
    ///
    /// If the request was forwarded.
    pub fn responded(self) -> http::Response<Bytes> {
        match self {
            RequestOutcome::Responded(response) => response,
            RequestOutcome::Forwarded(request) => {
                panic!("expected a local response, the filter forwarded {request:?}")
            }
        }
    }
}

/// What became of a response.
#[derive(Debug)]
pub enum ResponseOutcome {
    /// The (possibly modified) response goes to the client.
    Forwarded(http::Response<Bytes>),
    /// The filter replaced it with a local response.
    Replaced(http::Response<Bytes>),
}

impl ResponseOutcome {
    /// The response the client gets, either way.
    pub fn into_response(self) -> http::Response<Bytes> {
        match self {
            ResponseOutcome::Forwarded(response) | ResponseOutcome::Replaced(response) => response,
        }
    }
}

/// A request and its response through one filter instance.
#[derive(Debug)]
pub struct Exchange {
    /// The request as forwarded; `None` when the filter answered it locally.
    pub forwarded: Option<http::Request<Bytes>>,
    /// What the client gets.
    pub response: http::Response<Bytes>,
    /// The request's attributes (`request.set-attribute`) after the last phase, also
    /// when the filter answered locally.
    pub attributes: Attributes,
}

impl Exchange {
    /// An attribute the filter set on the request, by the end of the exchange.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name)
    }
}

/// The attributes a request carries in its extensions (none set: empty).
fn attributes_of(parts: &http::request::Parts) -> Attributes {
    parts
        .extensions
        .get::<Attributes>()
        .cloned()
        .unwrap_or_default()
}

/// Splits `body` into chunks of `size` bytes (the last may be shorter), to feed body
/// phases the way a network would.
pub fn chunks_of(body: &[u8], size: usize) -> Vec<Bytes> {
    body.chunks(size.max(1))
        .map(Bytes::copy_from_slice)
        .collect()
}

fn to_http(local: LocalResponse) -> http::Response<Bytes> {
    let mut builder = http::Response::builder().status(local.status);
    for (name, value) in &local.headers {
        builder = builder.header(name, value);
    }
    // nantian-wasm validated status and headers; a failure here is a bug there.
    builder
        .body(local.body)
        .expect("nantian-wasm validates local responses")
}

/// Feeds `chunks` (at least one call, the last with `end_of_stream`) through `phase` and
/// collects what the filter lets through, or its local response.
fn run_body(
    chunks: Vec<Bytes>,
    mut phase: impl FnMut(Bytes, bool) -> Result<BodyAction, FilterError>,
) -> Result<Result<Bytes, http::Response<Bytes>>, FilterError> {
    let chunks = if chunks.is_empty() {
        vec![Bytes::new()]
    } else {
        chunks
    };
    let last = chunks.len() - 1;
    let mut body = BytesMut::new();
    for (index, chunk) in chunks.into_iter().enumerate() {
        match phase(chunk.clone(), index == last)? {
            BodyAction::Continue => body.extend_from_slice(&chunk),
            BodyAction::Replace(bytes) => body.extend_from_slice(&bytes),
            BodyAction::Respond(local) => return Ok(Err(to_http(local))),
        }
    }
    Ok(Ok(body.freeze()))
}

fn request_phases(
    active: &mut ActiveFilter,
    parts: &mut http::request::Parts,
    chunks: Vec<Bytes>,
) -> Result<Result<Bytes, http::Response<Bytes>>, FilterError> {
    if let HeadersAction::Respond(local) = active.on_request_headers(parts)? {
        return Ok(Err(to_http(local)));
    }
    run_body(chunks, |chunk, end| {
        active.on_request_body(parts, chunk, end)
    })
}

fn response_phases(
    active: &mut ActiveFilter,
    request: &mut http::request::Parts,
    mut response: http::response::Parts,
    chunks: Vec<Bytes>,
) -> Result<ResponseOutcome, FilterError> {
    if let HeadersAction::Respond(local) = active.on_response_headers(request, &mut response)? {
        return Ok(ResponseOutcome::Replaced(to_http(local)));
    }
    let body = run_body(chunks, |chunk, end| {
        active.on_response_body(request, &mut response, chunk, end)
    })?;
    Ok(match body {
        Ok(body) => ResponseOutcome::Forwarded(http::Response::from_parts(response, body)),
        Err(local) => ResponseOutcome::Replaced(local),
    })
}

impl BoundFilter {
    /// Runs the request phases, with the request's body as one chunk.
    pub fn request(&self, request: http::Request<Bytes>) -> Result<RequestOutcome, FilterError> {
        let (parts, body) = request.into_parts();
        self.request_chunked(http::Request::from_parts(parts, ()), vec![body])
    }

    /// Runs the request phases, delivering the body as `chunks`.
    pub fn request_chunked(
        &self,
        request: http::Request<()>,
        chunks: Vec<Bytes>,
    ) -> Result<RequestOutcome, FilterError> {
        let (mut parts, ()) = request.into_parts();
        let mut active = self.binding().start()?;
        Ok(match request_phases(&mut active, &mut parts, chunks)? {
            Ok(body) => RequestOutcome::Forwarded(http::Request::from_parts(parts, body)),
            Err(local) => RequestOutcome::Responded(local),
        })
    }

    /// Runs the response phases for `response` to `request`, body as one chunk.
    pub fn response(
        &self,
        request: http::Request<Bytes>,
        response: http::Response<Bytes>,
    ) -> Result<ResponseOutcome, FilterError> {
        let (parts, body) = response.into_parts();
        self.response_chunked(request, http::Response::from_parts(parts, ()), vec![body])
    }

    /// Runs the response phases, delivering the response body as `chunks`.
    pub fn response_chunked(
        &self,
        request: http::Request<Bytes>,
        response: http::Response<()>,
        chunks: Vec<Bytes>,
    ) -> Result<ResponseOutcome, FilterError> {
        let (mut request, _) = request.into_parts();
        let (response, ()) = response.into_parts();
        let mut active = self.binding().start()?;
        response_phases(&mut active, &mut request, response, chunks)
    }

    /// Runs a whole exchange on one instance: the request phases, then (unless the
    /// filter answered) the response phases on `upstream`, with the request as forwarded.
    pub fn exchange(
        &self,
        request: http::Request<Bytes>,
        upstream: http::Response<Bytes>,
    ) -> Result<Exchange, FilterError> {
        let (mut parts, body) = request.into_parts();
        let mut active = self.binding().start()?;
        let forwarded_body = match request_phases(&mut active, &mut parts, vec![body])? {
            Ok(body) => body,
            Err(local) => {
                return Ok(Exchange {
                    forwarded: None,
                    response: local,
                    attributes: attributes_of(&parts),
                });
            }
        };
        let (response, response_body) = upstream.into_parts();
        let response = response_phases(&mut active, &mut parts, response, vec![response_body])?;
        Ok(Exchange {
            attributes: attributes_of(&parts),
            forwarded: Some(http::Request::from_parts(parts, forwarded_body)),
            response: response.into_response(),
        })
    }
}
