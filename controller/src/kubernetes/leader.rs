//! Leader election with a coordination.k8s.io Lease, the way client-go's leaderelection
//! does it: the holder renews `renewTime` every [`RENEW_EVERY`]; anyone may take the
//! Lease once it has not been renewed for its `leaseDurationSeconds`. Every write carries
//! the `resourceVersion` it read, so two candidates can't both win a round.
//!
//! Only the leader writes status and provisions data planes; every replica watches,
//! translates and serves xDS, so hosts connected to any replica get the same config.
//! On shutdown the leader releases the Lease (an empty holder), and the next replica
//! takes over at its next try instead of waiting for the lease to expire.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

pub struct LeaderElection {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    leading: watch::Sender<bool>,
}

/// What one round decided.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    Leading,
    Following(String),
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, lease_name: &str, identity: &str) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.to_string(),
            identity: identity.to_string(),
            leading: watch::channel(false).0,
        }
    }

    /// True while this replica holds the Lease.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Campaigns and renews until `stop` turns true, then releases the Lease if held.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut last: Option<Round> = None;
        loop {
            let round = match self.try_round().await {
                Ok(round) => round,
                Err(e) => {
                    warn!(lease = %self.lease_name, error = %e, "leader election round failed");
                    // Without a successful renew for a whole lease, another replica may
                    // lead: stop acting as leader well before that.
                    Round::Following(String::new())
                }
            };
            let leading = round == Round::Leading;
            if last.as_ref() != Some(&round) {
                match &round {
                    Round::Leading => info!(identity = %self.identity, "became leader"),
                    Round::Following(holder) if !holder.is_empty() => {
                        info!(leader = %holder, "following")
                    }
                    Round::Following(_) => {}
                }
            }
            self.leading
                .send_if_modified(|l| std::mem::replace(l, leading) != leading);
            last = Some(round);
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = stop.changed() => {
                    if *self.leading.borrow() {
                        self.release().await;
                    }
                    self.leading.send_replace(false);
                    return;
                }
            }
        }
    }

    async fn try_round(&self) -> Result<Round, kube::Error> {
        let now = jiff::Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    ..Default::default()
                },
                spec: Some(self.held_spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Round::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Round::Following(String::new())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let duration = spec
                .lease_duration_seconds
                .map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(0) as u64));
            t.0.checked_add(duration).is_ok_and(|end| end < now)
        });
        if holder != self.identity && !holder.is_empty() && !expired {
            return Ok(Round::Following(holder));
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
        let acquired = if holder == self.identity {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.held_spec(now, acquired, transitions));
        // `replace` sends the resourceVersion read above: a concurrent winner makes it 409.
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Round::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Round::Following(holder)),
            Err(e) => Err(e),
        }
    }

    fn held_spec(
        &self,
        now: jiff::Timestamp,
        acquired: Option<MicroTime>,
        transitions: i32,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Gives the Lease up so another replica can take it at once.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.lease_name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.lease_name, "released leadership"),
            Err(e) => warn!(lease = %self.lease_name, error = %e, "cannot release the lease"),
        }
    }
}
