//! Glue between the generated `Guest` trait and [`Filter`]: the filter value lives in a
//! per-instance slot filled by `init`.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::exports::nantian::filter::filter::Guest;
use crate::{BodyAction, Filter, FilterInfo, HeadersAction, LogLevel, Request, Response};

/// The type [`export_filter!`](crate::export_filter) exports; not used directly.
pub struct FilterExport<F>(PhantomData<F>);

thread_local! {
    // A Wasm instance runs one call at a time on one thread, so this is the instance's
    // filter. `dyn Any` because a static cannot be generic over the filter type.
    static FILTER: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with_filter<F: Filter, R>(call: impl FnOnce(&mut F) -> R) -> R {
    FILTER.with_borrow_mut(|slot| {
        let filter = slot
            .as_mut()
            .and_then(|filter| filter.downcast_mut::<F>())
            .expect("nantian filter called before a successful init");
        call(filter)
    })
}

/// Sends panic messages to the host log: stderr would lose them, and the panic itself
/// ends the call with a trap that the host reports next to this message.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        crate::host::log(LogLevel::Error, &format!("filter panicked: {info}"));
    }));
}

impl<F: Filter> Guest for FilterExport<F> {
    fn init() -> Result<FilterInfo, String> {
        install_panic_hook();
        let filter = F::new(&crate::host::config())?;
        let info = filter.info();
        FILTER.set(Some(Box::new(filter)));
        Ok(info)
    }

    fn on_request_headers(req: &Request) -> HeadersAction {
        with_filter(|filter: &mut F| filter.on_request_headers(req))
    }

    fn on_request_body(req: &Request, chunk: Vec<u8>, end_of_stream: bool) -> BodyAction {
        with_filter(|filter: &mut F| filter.on_request_body(req, chunk, end_of_stream))
    }

    fn on_response_headers(req: &Request, resp: &Response) -> HeadersAction {
        with_filter(|filter: &mut F| filter.on_response_headers(req, resp))
    }

    fn on_response_body(
        req: &Request,
        resp: &Response,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> BodyAction {
        with_filter(|filter: &mut F| filter.on_response_body(req, resp, chunk, end_of_stream))
    }
}
