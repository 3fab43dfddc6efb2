//! Test support for Nantian end-to-end tests: the echo backend, the process harness and the
//! Kubernetes control plane (`kube`).

pub mod echo;
pub mod harness;
pub mod kube;
pub mod kube_support;
