//! Reading a host's Prometheus metrics (its admin endpoint, port 15000 of its Gateway's
//! address).

use crate::harness::{Env, get, send};

/// The text exposition of the host of the `n`-th Gateway address ([`Env::gateway_ip`]).
pub async fn host_metrics(env: &Env, n: u8) -> String {
    let addr = format!("{}:15000", env.gateway_ip(n));
    let reply = send(get(&addr, "x", "/metrics"))
        .await
        .expect("the host's admin endpoint answers");
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The value of the first series of `name` carrying every label of `labels`.
pub fn series(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}
