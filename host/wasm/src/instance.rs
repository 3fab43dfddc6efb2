//! One filter instance: a store with its instantiated component.

use std::sync::Arc;

use wasmtime::Store;

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
    ) -> Result<(Self, InitOutcome), FilterError> {
        let mut store = Store::new(pre.engine(), StoreState::new(context.clone(), max_memory));
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks);
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
