//! Test support for Nantian end-to-end tests: the echo backend and the process harness.

pub mod echo;
pub mod harness;
