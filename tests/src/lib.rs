//! Test support for Nantian end-to-end tests: the echo backend, the mock LLM providers
//! (`ai_mock`), the process harness and the Kubernetes control plane (`kube`).

pub mod ai_mock;
pub mod echo;
pub mod harness;
pub mod kube;
pub mod kube_support;
pub mod metrics;
pub mod redis;
