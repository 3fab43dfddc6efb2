//! Gateway addresses in the replay: upstream's address placeholders and the
//! `gatewayAddresses` check.
//!
//! Upstream's suite fills `PLACEHOLDER_USABLE_ADDRS` / `PLACEHOLDER_UNUSABLE_ADDRS` entries
//! of a Gateway's `spec.addresses` from its `--usable-address` / `--unusable-address` flags
//! (`Applier.prepareGateway`). The replay's usable address is a free Gateway address of its
//! own test subnet; its unusable one is in TEST-NET-1 (RFC 5737), which no interface has.

use serde_json::{Value, json};

use crate::model::{ExpectedAddress, GatewayAddresses};
use crate::status::{StatusDoc, array, latest_generation};

pub const USABLE_PLACEHOLDER: &str = "PLACEHOLDER_USABLE_ADDRS";
pub const UNUSABLE_PLACEHOLDER: &str = "PLACEHOLDER_UNUSABLE_ADDRS";
/// The unusable address: supported (an IPAddress), but on no interface of any machine.
pub const UNUSABLE_ADDRESS: &str = "192.0.2.1";

/// The addresses that stand for the placeholders, one per pool like upstream's flags.
#[derive(Debug, Clone, Default)]
pub struct AddressPools {
    pub usable: Option<String>,
    pub unusable: Option<String>,
}

impl AddressPools {
    /// What `value` stands for: the pool's address for a placeholder, else itself.
    pub fn resolve(&self, value: &str) -> Result<String, String> {
        let pool = match value {
            USABLE_PLACEHOLDER => &self.usable,
            UNUSABLE_PLACEHOLDER => &self.unusable,
            other => return Ok(other.to_string()),
        };
        pool.clone()
            .ok_or_else(|| format!("no Gateway of the case had {value} filled in"))
    }
}

/// Whether the Gateway's `spec.addresses` has a `placeholder` entry.
pub fn has_placeholder(gateway: &Value, placeholder: &str) -> bool {
    array(&gateway["spec"]["addresses"])
        .iter()
        .any(|a| a["value"] == placeholder)
}

/// Replaces each placeholder entry of the Gateway's `spec.addresses` by its pool's address,
/// typed `IPAddress` as upstream's `parseAddress` types an IP.
///
/// Upstream rebuilds the whole list from the placeholders and the `test/fake-invalid-type`
/// entries only, which drops every other entry: there the `IPAddress` without a value of
/// GatewayOptionalAddressValue vanishes and the Gateway has no addresses at all. The replay
/// keeps the other entries, so that test checks what it means to.
pub fn overlay(gateway: &mut Value, pools: &AddressPools) -> Result<(), String> {
    let Some(addresses) = gateway["spec"]["addresses"].as_array_mut() else {
        return Ok(());
    };
    for address in addresses.iter_mut() {
        let Some(value) = address["value"].as_str() else {
            continue;
        };
        if [USABLE_PLACEHOLDER, UNUSABLE_PLACEHOLDER].contains(&value) {
            *address = json!({"type": "IPAddress", "value": pools.resolve(value)?});
        }
    }
    Ok(())
}

/// The `gatewayAddresses` step: current conditions, every `includes` entry among
/// `status.addresses`, no `excludes` value there.
pub fn gateway_addresses(
    doc: &StatusDoc,
    step: &GatewayAddresses,
    pools: &AddressPools,
) -> Result<(), String> {
    let gw = &step.gateway;
    let item = doc
        .item("Gateway", gw)
        .ok_or_else(|| format!("no status for Gateway {gw}{}", doc.errors_suffix()))?;
    latest_generation(item, array(&item["status"]["conditions"]), "Gateway")?;
    let addresses = array(&item["status"]["addresses"]);
    let shown = || Value::Array(addresses.to_vec());
    for want in &step.includes {
        let value = pools.resolve(&want.value)?;
        if !addresses.iter().any(|a| matches(a, &want.type_, &value)) {
            return Err(format!(
                "Gateway {gw}: no address {} in status.addresses {}",
                describe(want, &value),
                shown()
            ));
        }
    }
    for excluded in &step.excludes {
        let value = pools.resolve(excluded)?;
        if addresses.iter().any(|a| a["value"] == value.as_str()) {
            return Err(format!(
                "Gateway {gw}: status.addresses {} should not have {value:?}",
                shown()
            ));
        }
    }
    Ok(())
}

fn matches(address: &Value, type_: &str, value: &str) -> bool {
    let has_type = address["type"]
        .as_str()
        .is_some_and(|t| !t.is_empty() && (type_.is_empty() || t == type_));
    has_type && (value.is_empty() || address["value"] == value)
}

fn describe(want: &ExpectedAddress, value: &str) -> String {
    let or_any = |s: &str| {
        if s.is_empty() {
            "any".to_string()
        } else {
            format!("{s:?}")
        }
    };
    format!(
        "of type {} with value {}",
        or_any(&want.type_),
        or_any(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::from_yaml;

    fn pools() -> AddressPools {
        AddressPools {
            usable: Some("127.0.100.5".into()),
            unusable: Some(UNUSABLE_ADDRESS.into()),
        }
    }

    #[test]
    fn placeholders_become_typed_addresses_and_other_entries_stay() {
        let mut gw = json!({"spec": {"addresses": [
            {"type": "test/fake-invalid-type", "value": "fake address teehee!"},
            {"value": UNUSABLE_PLACEHOLDER},
            {"value": USABLE_PLACEHOLDER},
            {"type": "IPAddress"},
        ]}});
        assert!(has_placeholder(&gw, USABLE_PLACEHOLDER));
        overlay(&mut gw, &pools()).unwrap();
        assert_eq!(
            gw["spec"]["addresses"],
            json!([
                {"type": "test/fake-invalid-type", "value": "fake address teehee!"},
                {"type": "IPAddress", "value": UNUSABLE_ADDRESS},
                {"type": "IPAddress", "value": "127.0.100.5"},
                {"type": "IPAddress"},
            ])
        );
        assert!(!has_placeholder(&gw, USABLE_PLACEHOLDER));
        let mut unfilled = json!({"spec": {"addresses": [{"value": USABLE_PLACEHOLDER}]}});
        assert!(overlay(&mut unfilled, &AddressPools::default()).is_err());
    }

    #[test]
    fn addresses_are_checked_by_type_and_value() {
        let doc = |addresses: Value| {
            StatusDoc(
                json!({"items": [{"kind": "Gateway", "namespace": "infra", "name": "gw",
                "generation": 2, "status": {"addresses": addresses, "conditions": [
                    {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 2}]}}]}),
            )
        };
        let step: GatewayAddresses = from_yaml(&format!(
            "{{gateway: infra/gw, includes: [{{type: IPAddress, value: {USABLE_PLACEHOLDER}}}], excludes: [{UNUSABLE_PLACEHOLDER}, 'fake address teehee!']}}"
        ))
        .unwrap();
        let good = doc(json!([{"type": "IPAddress", "value": "127.0.100.5"}]));
        gateway_addresses(&good, &step, &pools()).unwrap();
        let untyped = doc(json!([{"value": "127.0.100.5"}]));
        assert!(gateway_addresses(&untyped, &step, &pools()).is_err());
        let wrong_type = doc(json!([{"type": "Hostname", "value": "127.0.100.5"}]));
        assert!(gateway_addresses(&wrong_type, &step, &pools()).is_err());
        let with_unusable = doc(json!([
            {"type": "IPAddress", "value": "127.0.100.5"},
            {"type": "IPAddress", "value": UNUSABLE_ADDRESS}]));
        let err = gateway_addresses(&with_unusable, &step, &pools()).unwrap_err();
        assert!(err.contains(UNUSABLE_ADDRESS), "{err}");

        // WaitForGatewayAddress: any address with a type.
        let any: GatewayAddresses = from_yaml("{gateway: infra/gw, includes: [{}]}").unwrap();
        gateway_addresses(&good, &any, &AddressPools::default()).unwrap();
        assert!(gateway_addresses(&doc(json!([])), &any, &AddressPools::default()).is_err());
        assert!(gateway_addresses(&untyped, &any, &AddressPools::default()).is_err());
        // Stale conditions are not trusted.
        let mut stale = good;
        stale.0["items"][0]["generation"] = json!(3);
        assert!(gateway_addresses(&stale, &any, &AddressPools::default()).is_err());
    }
}
