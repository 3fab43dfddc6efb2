//! An instance checked out for one request, and the results of its calls.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use wasmtime::component::Resource;

use crate::binding::FilterBinding;
use crate::bindings::nantian::filter::types;
use crate::error::{FilterError, classify};
use crate::instance::FilterInstance;

/// What a header phase decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadersAction {
    /// Go on with the (possibly mutated) message.
    Continue,
    /// Answer the client with this response instead.
    Respond(LocalResponse),
}

/// What a body phase decided for one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyAction {
    /// Forward the chunk unchanged.
    Continue,
    /// Forward these bytes instead (empty: hold the chunk back).
    Replace(Bytes),
    /// Answer with this response instead.
    Respond(LocalResponse),
}

/// A response produced by a filter. Status, header names and values are checked to be
/// valid HTTP: a filter answering with invalid ones fails with [`FilterError::Trap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

fn local_response(response: types::LocalResponse) -> Result<LocalResponse, FilterError> {
    if http::StatusCode::from_u16(response.status).is_err() {
        return Err(FilterError::Trap(format!(
            "filter answered with invalid status {}",
            response.status
        )));
    }
    for (name, value) in &response.headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() || HeaderValue::from_str(value).is_err()
        {
            return Err(FilterError::Trap(format!(
                "filter answered with invalid header {name:?}: {value:?}"
            )));
        }
    }
    Ok(LocalResponse {
        status: response.status,
        headers: response.headers,
        body: response.body.into(),
    })
}

fn headers_action(action: types::HeadersAction) -> Result<HeadersAction, FilterError> {
    Ok(match action {
        types::HeadersAction::Continue => HeadersAction::Continue,
        types::HeadersAction::Respond(response) => {
            HeadersAction::Respond(local_response(response)?)
        }
    })
}

fn body_action(action: types::BodyAction) -> Result<BodyAction, FilterError> {
    Ok(match action {
        types::BodyAction::Continue => BodyAction::Continue,
        types::BodyAction::Replace(bytes) => BodyAction::Replace(bytes.into()),
        types::BodyAction::Respond(response) => BodyAction::Respond(local_response(response)?),
    })
}

/// A filter serving one request: its binding's declared header changes and, for a
/// filter with phases, an instance. `Send`, so it can live across the `.await`s of a
/// request's body phases. Dropping it returns the instance to the binding's pool, unless
/// a call failed: a failed instance is discarded at once.
pub struct ActiveFilter {
    binding: Arc<FilterBinding>,
    instance: Slot,
}

enum Slot {
    /// The filter has no phases: only its declared header changes run.
    NotNeeded,
    Ready(FilterInstance),
    /// A call failed; the instance is gone.
    Failed,
}

const ALREADY_FAILED: &str = "the filter already failed during this request";

/// The request/response a call works on: moved into the store for the call, then back.
struct CallMessages<'a> {
    request: &'a mut http::request::Parts,
    response: Option<&'a mut http::response::Parts>,
}

impl ActiveFilter {
    pub(crate) fn new(binding: Arc<FilterBinding>, instance: FilterInstance) -> Self {
        ActiveFilter {
            binding,
            instance: Slot::Ready(instance),
        }
    }

    pub(crate) fn without_instance(binding: Arc<FilterBinding>) -> Self {
        ActiveFilter {
            binding,
            instance: Slot::NotNeeded,
        }
    }

    /// The binding this instance serves.
    pub fn binding(&self) -> &Arc<FilterBinding> {
        &self.binding
    }

    /// Runs one export with the messages swapped into the store. Swapping is two moves
    /// each way: the store keeps an empty placeholder between calls.
    fn call<R>(
        &mut self,
        messages: CallMessages<'_>,
        export: impl FnOnce(&mut FilterInstance) -> wasmtime::Result<R>,
    ) -> Result<R, FilterError> {
        let Slot::Ready(instance) = &mut self.instance else {
            // `NotNeeded` bindings declare no phase, so no call gets here for them.
            return Err(FilterError::Trap(ALREADY_FAILED.into()));
        };
        instance
            .store
            .set_epoch_deadline(self.binding.deadline_ticks);
        let state = instance.store.data_mut();
        state.guest_error = None;
        state.io_wait = Duration::ZERO;
        std::mem::swap(&mut state.request, messages.request);
        if let Some(response) = messages.response {
            std::mem::swap(&mut state.response, response);
            let result = export(instance);
            let state = instance.store.data_mut();
            std::mem::swap(&mut state.request, messages.request);
            std::mem::swap(&mut state.response, response);
            self.finish(result)
        } else {
            let result = export(instance);
            std::mem::swap(&mut instance.store.data_mut().request, messages.request);
            self.finish(result)
        }
    }

    fn finish<R>(&mut self, result: wasmtime::Result<R>) -> Result<R, FilterError> {
        let Slot::Ready(instance) = &mut self.instance else {
            return Err(FilterError::Trap(ALREADY_FAILED.into()));
        };
        instance.calls = instance.calls.saturating_add(1);
        let e = match result {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let state = instance.store.data();
        let error = classify(&e, state.limiter.exceeded, state.guest_error.as_deref());
        tracing::debug!(
            filter = self.binding.display_name(),
            module = self.binding.module().name(),
            kind = error.kind(),
            "filter call failed: {error}"
        );
        // Whatever state the guest was in is unusable; its slot goes back right away.
        self.instance = Slot::Failed;
        Err(error)
    }

    /// The request head: the declared request header changes, then the filter's phase.
    /// Mutations made through the filter's `request` resource are applied to `req` in
    /// place.
    pub fn on_request_headers(
        &mut self,
        req: &mut http::request::Parts,
    ) -> Result<HeadersAction, FilterError> {
        self.binding.header_ops().apply_request(&mut req.headers);
        if !self.binding.info().phases.request_headers {
            return Ok(HeadersAction::Continue);
        }
        let action = self.call(
            CallMessages {
                request: req,
                response: None,
            },
            |instance| {
                let FilterInstance { store, filter, .. } = instance;
                filter
                    .nantian_filter_filter()
                    .call_on_request_headers(store, Resource::new_borrow(0))
            },
        )?;
        headers_action(action)
    }

    /// One chunk of the request body (`end_of_stream` on the last, possibly empty one).
    pub fn on_request_body(
        &mut self,
        req: &mut http::request::Parts,
        chunk: Bytes,
        end_of_stream: bool,
    ) -> Result<BodyAction, FilterError> {
        if !self.binding.info().phases.request_body {
            return Ok(BodyAction::Continue);
        }
        let action = self.call(
            CallMessages {
                request: req,
                response: None,
            },
            |instance| {
                let FilterInstance { store, filter, .. } = instance;
                filter.nantian_filter_filter().call_on_request_body(
                    store,
                    Resource::new_borrow(0),
                    &chunk,
                    end_of_stream,
                )
            },
        )?;
        body_action(action)
    }

    /// The response head, with the request as it was forwarded: the declared response
    /// header changes, then the filter's phase.
    pub fn on_response_headers(
        &mut self,
        req: &mut http::request::Parts,
        resp: &mut http::response::Parts,
    ) -> Result<HeadersAction, FilterError> {
        self.binding.header_ops().apply_response(&mut resp.headers);
        if !self.binding.info().phases.response_headers {
            return Ok(HeadersAction::Continue);
        }
        let action = self.call(
            CallMessages {
                request: req,
                response: Some(resp),
            },
            |instance| {
                let FilterInstance { store, filter, .. } = instance;
                filter.nantian_filter_filter().call_on_response_headers(
                    store,
                    Resource::new_borrow(0),
                    Resource::new_borrow(0),
                )
            },
        )?;
        headers_action(action)
    }

    /// One chunk of the response body (`end_of_stream` on the last, possibly empty one).
    pub fn on_response_body(
        &mut self,
        req: &mut http::request::Parts,
        resp: &mut http::response::Parts,
        chunk: Bytes,
        end_of_stream: bool,
    ) -> Result<BodyAction, FilterError> {
        if !self.binding.info().phases.response_body {
            return Ok(BodyAction::Continue);
        }
        let action = self.call(
            CallMessages {
                request: req,
                response: Some(resp),
            },
            |instance| {
                let FilterInstance { store, filter, .. } = instance;
                filter.nantian_filter_filter().call_on_response_body(
                    store,
                    Resource::new_borrow(0),
                    Resource::new_borrow(0),
                    &chunk,
                    end_of_stream,
                )
            },
        )?;
        body_action(action)
    }
}

impl Drop for ActiveFilter {
    fn drop(&mut self) {
        if let Slot::Ready(instance) = std::mem::replace(&mut self.instance, Slot::Failed) {
            self.binding.release(instance);
        }
    }
}
