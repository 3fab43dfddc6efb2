//! Nantian control plane: Gateway API objects in, statuses and xDS resources out.
#![forbid(unsafe_code)]

pub mod crd;
pub mod lb_policy;
pub mod load;
pub mod model;
pub mod rbac;
pub mod status;
pub mod translate;

pub mod address_pool;
pub mod admin;
pub mod kubernetes;
pub mod snapshot;
pub mod standalone;
pub mod supervisor;
pub mod xds_server;
