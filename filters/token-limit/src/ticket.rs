//! What an admitted request carries from its request body to its response: a request
//! attribute (the instance serves other requests in between and keeps nothing itself).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::budget::Quotas;

/// The attribute's value while a request body arrives in several chunks: it tells the
/// body buffer belongs to this request (see `Held` in the crate root).
pub const PENDING: &str = "pending";

/// The name of this binding's attribute: `ratelimit.` and 16 hex digits of the policy's
/// SHA-256, so two policies on one route keep separate tickets within the 128-byte
/// limit on names.
pub fn attribute(policy: &str) -> String {
    let digest = Sha256::digest(policy.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("ratelimit.{hex}")
}

/// An admitted request's reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The key's hash, which names its counters.
    pub key: String,
    /// Tokens taken from every token limit at admission (the prompt's estimate).
    pub reserved: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at: u64,
    /// What the `x-ratelimit-*` headers say.
    pub quotas: Quotas,
    /// The reservation was settled (refunded at an error response's head).
    #[serde(default)]
    pub settled: bool,
}

impl Ticket {
    pub fn encode(&self) -> String {
        // Strings and numbers always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The ticket in an attribute's value, unless it is settled (or not a ticket:
    /// [`PENDING`], or a request this filter refused or let through unlimited).
    pub fn decode(value: &str) -> Option<Ticket> {
        serde_json::from_str::<Ticket>(value)
            .ok()
            .filter(|ticket| !ticket.settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Quota;

    #[test]
    fn tickets_round_trip_and_fit_an_attribute() {
        let ticket = Ticket {
            key: crate::key::hash("sk-secret"),
            reserved: 1234,
            at: 1_700_000_000_000,
            quotas: Quotas {
                requests: Some(Quota {
                    limit: 60,
                    remaining: 59,
                    reset_millis: 1000,
                }),
                tokens: Some(Quota {
                    limit: 2_000_000,
                    remaining: -5,
                    reset_millis: 86_399_999,
                }),
            },
            settled: false,
        };
        let value = ticket.encode();
        assert!(value.len() < 400, "{value}");
        assert!(!value.contains("sk-secret"));
        assert_eq!(Ticket::decode(&value), Some(ticket.clone()));
        let settled = Ticket {
            settled: true,
            ..ticket
        };
        assert_eq!(Ticket::decode(&settled.encode()), None);
        assert_eq!(Ticket::decode(PENDING), None);
    }

    #[test]
    fn attribute_names_differ_by_policy() {
        let name = attribute("team-a/per-tenant");
        assert_eq!(name.len(), "ratelimit.".len() + 16);
        assert!(name.starts_with("ratelimit."));
        assert_ne!(name, attribute("team-b/per-tenant"));
        assert_eq!(name, attribute("team-a/per-tenant"));
    }
}
