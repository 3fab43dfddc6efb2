//! A Gateway's `spec.addresses`: which entries Nantian supports, and which addresses its
//! host binds (every listener on every one, as the spec asks) and status lists.
//!
//! - A type other than `IPAddress` is UnsupportedAddress (Accepted=False). `Hostname`
//!   (Extended support) names a DNS entry point such as a load balancer's; a standalone
//!   host has no load balancer to give a name to, and binds sockets, so it can't honour one.
//! - An `IPAddress` that is not an IP address is UnsupportedAddress too.
//! - An `IPAddress` without a value gets one from the runtime's allocator
//!   ([`TranslateOptions::addresses`]); none left is AddressNotAssigned.
//! - An `IPAddress` this machine can't bind ([`TranslateOptions::unusable_addresses`]), or
//!   one an earlier Gateway (in namespace/name order) already binds, is AddressNotUsable:
//!   the Gateway stays Accepted but not Programmed, and is still served on its usable
//!   addresses, so adding a bad address doesn't cut off traffic on the good ones.
//! - No addresses at all: one allocated address.

use std::collections::BTreeMap;
use std::net::IpAddr;

use gateway_api::gateways::Gateway;

use super::{Addressing, ProvisionedGateway, TranslateOptions};
use crate::model::{Key, MetaExt};
use crate::status::GatewayAddress;
use crate::status::{Problem, reason};

pub(super) const IP_ADDRESS: &str = "IPAddress";

/// What became of a Gateway's `spec.addresses`.
#[derive(Clone, Debug, Default)]
pub(super) struct GatewayAddresses {
    /// The addresses the host binds and `status.addresses` lists, in spec order (an
    /// allocated one where its entry is).
    pub bound: Vec<IpAddr>,
    /// An entry Nantian can't support: the Gateway is not accepted (UnsupportedAddress).
    pub unsupported: Option<Problem>,
    /// Entries that got no usable address: the Gateway is not programmed
    /// (AddressNotUsable, AddressNotAssigned).
    pub unusable: Option<Problem>,
    /// `status.addresses` when they are not the bound ones (the Gateway's Service's).
    pub reported: Option<Vec<GatewayAddress>>,
}

/// Resolves `gw`'s addresses. `claimed` holds the static addresses earlier Gateways bind;
/// this one's are added to it.
pub(super) fn resolve(
    gw: &Gateway,
    opts: &TranslateOptions,
    claimed: &mut BTreeMap<IpAddr, Key>,
) -> GatewayAddresses {
    let key = (gw.namespace().to_string(), gw.name().to_string());
    let allocated = opts.addresses.get(&key).map(Vec::as_slice).unwrap_or(&[]);
    let entries: Vec<(&str, &str)> = gw
        .spec
        .addresses
        .iter()
        .flatten()
        .map(|a| {
            (
                a.r#type.as_deref().unwrap_or(IP_ADDRESS),
                a.value.as_deref().unwrap_or_default(),
            )
        })
        .collect();

    let unsupported: Vec<String> = entries
        .iter()
        .filter_map(|(type_, value)| match *type_ {
            IP_ADDRESS if value.is_empty() || value.parse::<IpAddr>().is_ok() => None,
            IP_ADDRESS => Some(format!("{value:?} is not an IP address")),
            other => Some(format!(
                "address type {other:?} is not supported: standalone hosts bind IP addresses (type IPAddress) only"
            )),
        })
        .collect();
    if !unsupported.is_empty() {
        return GatewayAddresses {
            unsupported: Some(Problem::new(
                reason::UNSUPPORTED_ADDRESS,
                unsupported.join("; "),
            )),
            ..Default::default()
        };
    }

    if let Addressing::ServiceAddresses { bind, by_gateway } = &opts.addressing {
        return through_service(&key, *bind, by_gateway.get(&key));
    }

    let mut out = GatewayAddresses::default();
    let mut not_usable = Vec::new();
    let mut not_assigned = 0;
    let mut next_allocated = allocated.iter();
    let mut take_allocated = |out: &mut GatewayAddresses| match next_allocated.next() {
        Some(ip) => out.bound.push(*ip),
        None => not_assigned += 1,
    };
    if entries.is_empty() {
        take_allocated(&mut out);
    }
    for (_, value) in &entries {
        let Ok(ip) = value.parse::<IpAddr>() else {
            take_allocated(&mut out);
            continue;
        };
        if let Some(why) = opts.unusable_addresses.get(&ip) {
            not_usable.push(format!(
                "{ip} cannot be used: {why}; remove it from spec.addresses or make it an address of this machine"
            ));
            continue;
        }
        match claimed.get(&ip) {
            Some(owner @ (ns, name)) if *owner != key => {
                not_usable.push(format!(
                    "{ip} is already used by Gateway {ns}/{name}; remove it from one of them"
                ));
            }
            _ => {
                claimed.insert(ip, key.clone());
                if !out.bound.contains(&ip) {
                    out.bound.push(ip);
                }
            }
        }
    }
    out.unusable = if !not_usable.is_empty() {
        Some(Problem::new(
            reason::ADDRESS_NOT_USABLE,
            not_usable.join("; "),
        ))
    } else if not_assigned > 0 {
        Some(Problem::new(
            reason::ADDRESS_NOT_ASSIGNED,
            format!(
                "the address pool has no address left for {not_assigned} IPAddress entr{} without a value",
                if not_assigned == 1 { "y" } else { "ies" }
            ),
        ))
    } else {
        None
    };
    out
}

/// Kubernetes: the host binds every interface of its pod; clients come through the
/// Gateway's Service, whose addresses are the Gateway's. Static `IPAddress` entries are
/// requested from the Service (as external IPs) by the provisioner. Without an address,
/// or without an available pod behind it, the Gateway is not programmed yet.
fn through_service(
    key: &Key,
    bind: IpAddr,
    provisioned: Option<&ProvisionedGateway>,
) -> GatewayAddresses {
    let reported = provisioned.map(|p| p.addresses.clone()).unwrap_or_default();
    let unusable = if reported.is_empty() {
        Some(Problem::new(
            reason::ADDRESS_NOT_ASSIGNED,
            format!(
                "waiting for the Service of Gateway {}/{} to get an address",
                key.0, key.1
            ),
        ))
    } else if provisioned.is_some_and(|p| p.available == Some(false)) {
        Some(Problem::new(
            reason::NO_RESOURCES,
            format!(
                "waiting for a pod of Gateway {}/{}'s Deployment to be available",
                key.0, key.1
            ),
        ))
    } else {
        None
    };
    GatewayAddresses {
        bound: vec![bind],
        unsupported: None,
        unusable,
        reported: Some(reported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        ("apps".to_string(), "web".to_string())
    }

    fn provisioned(addresses: &[&str], available: Option<bool>) -> ProvisionedGateway {
        ProvisionedGateway {
            addresses: addresses
                .iter()
                .map(|a| GatewayAddress {
                    type_: IP_ADDRESS.to_string(),
                    value: a.to_string(),
                })
                .collect(),
            available,
        }
    }

    fn not_programmed_reason(p: Option<&ProvisionedGateway>) -> Option<&'static str> {
        let bind = "0.0.0.0".parse().unwrap();
        let out = through_service(&key(), bind, p);
        assert_eq!(out.bound, vec![bind], "served whatever the status says");
        out.unusable.map(|problem| problem.reason)
    }

    #[test]
    fn a_provisioned_gateway_is_programmed_once_addressed_and_available() {
        assert_eq!(
            not_programmed_reason(None),
            Some(reason::ADDRESS_NOT_ASSIGNED)
        );
        assert_eq!(
            not_programmed_reason(Some(&provisioned(&[], Some(true)))),
            Some(reason::ADDRESS_NOT_ASSIGNED)
        );
        assert_eq!(
            not_programmed_reason(Some(&provisioned(&["10.0.0.5"], Some(false)))),
            Some(reason::NO_RESOURCES)
        );
        assert_eq!(
            not_programmed_reason(Some(&provisioned(&["10.0.0.5"], Some(true)))),
            None
        );
        // Pods Nantian does not run are not waited for.
        assert_eq!(
            not_programmed_reason(Some(&provisioned(&["10.0.0.5"], None))),
            None
        );
    }
}
