//! Listener distinctness within one Gateway (Gateway API "Handling indistinct Listeners").

use std::collections::BTreeMap;

use super::listener::ListenerState;
use crate::status::{Problem, reason};

/// Marks indistinct listeners. On one port, HTTP, HTTPS, TLS and TCP listeners (all on
/// TCP) must share a protocol (ProtocolConflict otherwise); listeners sharing port, protocol and hostname
/// are HostnameConflict. Every listener of a conflicting set is marked: the spec forbids
/// picking a winner. Listeners already marked (a ListenerSet's, by an earlier listener
/// that takes precedence) are out of the comparison.
pub(super) fn mark_conflicts(listeners: &mut [ListenerState]) {
    let stream =
        |l: &ListenerState| matches!(l.protocol.as_str(), "HTTP" | "HTTPS" | "TLS" | "TCP");
    let mut protocols_by_port: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    let open = |l: &ListenerState| l.conflict.is_none();
    for l in listeners.iter().filter(|l| open(l) && stream(l)) {
        let protocols = protocols_by_port.entry(l.port).or_default();
        if !protocols.contains(&l.protocol.as_str()) {
            protocols.push(&l.protocol);
        }
    }
    let mixed_ports: Vec<(i32, String)> = protocols_by_port
        .into_iter()
        .filter(|(_, protocols)| protocols.len() > 1)
        .map(|(port, protocols)| (port, protocols.join(", ")))
        .collect();

    let mut by_identity: BTreeMap<(i32, String, String), usize> = BTreeMap::new();
    for l in listeners.iter().filter(|l| open(l)) {
        let host = l.hostname.clone().unwrap_or_default().to_ascii_lowercase();
        *by_identity
            .entry((l.port, l.protocol.clone(), host))
            .or_default() += 1;
    }

    for l in listeners.iter_mut().filter(|l| l.conflict.is_none()) {
        if let Some((port, protocols)) = mixed_ports.iter().find(|(p, _)| *p == l.port && stream(l))
        {
            l.conflict = Some(Problem::new(
                reason::PROTOCOL_CONFLICT,
                format!("port {port} is used with different protocols ({protocols})"),
            ));
            continue;
        }
        let host = l.hostname.clone().unwrap_or_default().to_ascii_lowercase();
        if by_identity[&(l.port, l.protocol.clone(), host.clone())] > 1 {
            let shown = if host.is_empty() {
                "no hostname".to_string()
            } else {
                format!("hostname {host}")
            };
            l.conflict = Some(Problem::new(
                reason::HOSTNAME_CONFLICT,
                format!(
                    "another {} listener on port {} has {shown}",
                    l.protocol, l.port
                ),
            ));
        }
    }
}
