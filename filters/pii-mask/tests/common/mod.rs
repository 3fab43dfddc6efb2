//! Shared by the component tests.

pub mod clients;
