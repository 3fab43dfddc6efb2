//! Host bindings generated from `wit/filter.wit`. Kept apart because `bindgen!` output is
//! slow to compile; nothing else lives here.

wasmtime::component::bindgen!({
    world: "http-filter",
    path: "../../wit",
    // Host functions may trap: a filter passing an invalid header name ends its call.
    imports: { default: trappable },
});
