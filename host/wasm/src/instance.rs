//! One filter instance: a store with its instantiated component.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, StoreContextMut, UpdateDeadline};

use crate::bindings::nantian::filter::types;
use crate::bindings::{HttpFilter, HttpFilterPre};
use crate::error::{FilterError, classify};
use crate::state::{BindingContext, StoreState};

pub(crate) struct FilterInstance {
    pub store: Store<StoreState>,
    pub filter: HttpFilter,
    /// Calls served, for recycling reused instances.
    pub calls: u32,
}

/// What `init` answered: the filter's description, or its rejection of the configuration.
pub(crate) type InitOutcome = Result<types::FilterInfo, String>;

impl FilterInstance {
    /// Instantiates the component in a fresh store and runs its `init`.
    pub fn create(
        pre: &HttpFilterPre<StoreState>,
        context: &Arc<BindingContext>,
        max_memory: usize,
        deadline_ticks: u64,
        epoch_tick: Duration,
    ) -> Result<(Self, InitOutcome), FilterError> {
        let mut store = Store::new(pre.engine(), StoreState::new(context.clone(), max_memory));
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks);
        store.epoch_deadline_callback(move |store| Ok(credit_io_wait(store, epoch_tick)));
        let filter = pre.instantiate(&mut store).map_err(|e| {
            match classify(&e, store.data().limiter.exceeded, None) {
                FilterError::Trap(message) => FilterError::Instantiate(message),
                other => other,
            }
        })?;
        let init = filter
            .nantian_filter_filter()
            .call_init(&mut store)
            .map_err(|e| {
                let state = store.data();
                classify(&e, state.limiter.exceeded, state.guest_error.as_deref())
            })?;
        Ok((
            FilterInstance {
                store,
                filter,
                calls: 0,
            },
            init,
        ))
    }
}

/// At the deadline: the time the call waited on the counter store (a Redis round trip) is
/// not the filter's work, so the deadline moves on by that much, once per wait; with
/// nothing to credit the call is interrupted, as a timeout.
fn credit_io_wait(
    mut store: StoreContextMut<'_, StoreState>,
    epoch_tick: Duration,
) -> UpdateDeadline {
    let waited = std::mem::take(&mut store.data_mut().io_wait);
    if waited.is_zero() {
        return UpdateDeadline::Interrupt;
    }
    let tick = epoch_tick.as_nanos().max(1);
    let ticks = waited.as_nanos().div_ceil(tick);
    UpdateDeadline::Continue(u64::try_from(ticks).unwrap_or(u64::MAX))
}
