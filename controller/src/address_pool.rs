//! Standalone mode's Gateway addresses: the pool it allocates from, the allocator, and
//! the probe that tells whether a static address can be bound on this machine.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::snapshot::GatewayKey;

/// The default pool: loopback addresses no other loopback user is likely to hold.
pub const DEFAULT_POOL: &str = "127.0.10.0/24";

/// An IPv4 CIDR block whose host addresses (without the network and broadcast addresses)
/// Gateways get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPool {
    network: u32,
    prefix: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("address pool {0:?}: {1}")]
pub struct PoolError(String, &'static str);

impl FromStr for AddressPool {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Self, PoolError> {
        let err = |why| PoolError(s.to_string(), why);
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| err("not a CIDR (a.b.c.d/n)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| err("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| err("bad prefix length"))?;
        // A /31 or /32 has no host addresses once network and broadcast are set aside.
        if !(8..=30).contains(&prefix) {
            return Err(err("the prefix length must be 8..=30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(AddressPool {
            network: u32::from(ip) & mask,
            prefix,
        })
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl Default for AddressPool {
    fn default() -> Self {
        DEFAULT_POOL.parse().expect("the default pool parses")
    }
}

impl AddressPool {
    /// How many host addresses the pool holds.
    fn size(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The n-th host address (n < size).
    fn host(&self, n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self.network + 1 + n))
    }
}

/// Hands out addresses from its pool: stable for a Gateway for the life of the controller,
/// and derived from its name (and the entry's position) so a restart gives the same answer.
#[derive(Default)]
pub struct AddressAllocator {
    pool: AddressPool,
    assigned: BTreeMap<GatewayKey, Vec<IpAddr>>,
}

impl AddressAllocator {
    pub fn new(pool: AddressPool) -> Self {
        AddressAllocator {
            pool,
            assigned: BTreeMap::new(),
        }
    }

    /// Gives each Gateway of `wanted` its number of addresses, never one of `reserved`
    /// (the static `spec.addresses` of Gateways). A Gateway keeps what it had as long as
    /// it wants as many or more; one no longer wanted, or now reserved, frees its address.
    /// A Gateway may get fewer than it wants when the pool runs out.
    pub fn assign(
        &mut self,
        wanted: &BTreeMap<GatewayKey, usize>,
        reserved: &[IpAddr],
    ) -> BTreeMap<(String, String), Vec<IpAddr>> {
        self.assigned.retain(|key, ips| {
            let want = wanted.get(key).copied().unwrap_or(0);
            // Keep the leading addresses that are still free to use: the n-th entry
            // without a value keeps the n-th address.
            let keep = ips
                .iter()
                .take(want)
                .take_while(|ip| !reserved.contains(ip))
                .count();
            ips.truncate(keep);
            !ips.is_empty()
        });
        for (key, &want) in wanted {
            for slot in self.assigned.get(key).map_or(0, Vec::len)..want {
                match self.free_address(key, slot, reserved) {
                    Some(ip) => self.assigned.entry(key.clone()).or_default().push(ip),
                    None => break,
                }
            }
        }
        self.assigned
            .iter()
            .map(|(k, ips)| ((k.namespace.clone(), k.name.clone()), ips.clone()))
            .collect()
    }

    /// The first free address from a start derived from the Gateway's name and slot.
    fn free_address(&self, key: &GatewayKey, slot: usize, reserved: &[IpAddr]) -> Option<IpAddr> {
        let seed = match slot {
            0 => key.to_string(),
            n => format!("{key}#{n}"),
        };
        let hash = Sha256::digest(seed.as_bytes());
        let size = self.pool.size();
        let start = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]) % size;
        (0..size)
            .map(|i| self.pool.host((start + i) % size))
            .find(|ip| !reserved.contains(ip) && !self.assigned.values().flatten().any(|a| a == ip))
    }
}

/// Whether this machine can bind `ip`: `Err` says why not (for AddressNotUsable). Binds a
/// UDP socket to port 0, which needs the address to be local and nothing else.
pub fn probe(ip: IpAddr) -> Result<(), String> {
    match UdpSocket::bind((ip, 0)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            Err("it is not an address of any interface of this machine".to_string())
        }
        Err(e) => Err(format!("binding it fails: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> GatewayKey {
        GatewayKey::new("ns", name)
    }

    fn wants(list: &[(&GatewayKey, usize)]) -> BTreeMap<GatewayKey, usize> {
        list.iter().map(|(k, n)| ((*k).clone(), *n)).collect()
    }

    fn of(map: &BTreeMap<(String, String), Vec<IpAddr>>, name: &str) -> Vec<IpAddr> {
        map.get(&("ns".to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn pools_parse_to_their_network() {
        let pool: AddressPool = "127.3.7.230/28".parse().unwrap();
        assert_eq!(pool.to_string(), "127.3.7.224/28");
        assert_eq!(pool.size(), 14);
        assert_eq!(pool.host(0), "127.3.7.225".parse::<IpAddr>().unwrap());
        assert_eq!(pool.host(13), "127.3.7.238".parse::<IpAddr>().unwrap());
        assert_eq!(AddressPool::default().to_string(), DEFAULT_POOL);
        for bad in ["127.0.0.1", "::1/64", "127.0.0.0/31", "127.0.0.0/x", "a/24"] {
            assert!(bad.parse::<AddressPool>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_stable_and_distinct() {
        let (a, b) = (key("a"), key("b"));
        let mut alloc = AddressAllocator::default();
        let first = alloc.assign(&wants(&[(&a, 1)]), &[]);
        let both = alloc.assign(&wants(&[(&a, 1), (&b, 1)]), &[]);
        assert_eq!(of(&first, "a"), of(&both, "a"));
        assert_ne!(of(&both, "a"), of(&both, "b"));
        // Derived from the name: a new allocator (a restarted controller) agrees.
        let mut fresh = AddressAllocator::default();
        let again = fresh.assign(&wants(&[(&b, 1), (&a, 1)]), &[]);
        assert_eq!(of(&again, "a"), of(&both, "a"));
        // A static address taken by another Gateway moves the allocated one away.
        let taken = of(&both, "a")[0];
        let moved = fresh.assign(&wants(&[(&a, 1), (&b, 1)]), &[taken]);
        assert_ne!(of(&moved, "a"), vec![taken]);
        assert_eq!(of(&moved, "a").len(), 1);
    }

    #[test]
    fn every_entry_without_a_value_gets_its_own_address_from_the_pool() {
        let pool: AddressPool = "127.3.9.0/29".parse().unwrap();
        let a = key("a");
        let mut alloc = AddressAllocator::new(pool);
        let two = of(&alloc.assign(&wants(&[(&a, 2)]), &[]), "a");
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        for ip in &two {
            let IpAddr::V4(v4) = ip else { panic!("{ip}") };
            assert_eq!(v4.octets()[..3], [127, 3, 9], "{ip} is outside the pool");
            assert!(
                (1..=6).contains(&v4.octets()[3]),
                "{ip} is not a host address"
            );
        }
        // Wanting fewer keeps the first; wanting more again keeps it too.
        assert_eq!(of(&alloc.assign(&wants(&[(&a, 1)]), &[]), "a"), two[..1]);
        assert_eq!(of(&alloc.assign(&wants(&[(&a, 2)]), &[]), "a")[0], two[0]);
        // Not wanted any more: freed.
        assert!(alloc.assign(&wants(&[]), &[]).is_empty());
    }

    #[test]
    fn an_exhausted_pool_gives_what_it_has() {
        let pool: AddressPool = "127.3.9.0/30".parse().unwrap();
        let (a, b) = (key("a"), key("b"));
        let mut alloc = AddressAllocator::new(pool);
        let got = alloc.assign(&wants(&[(&a, 2), (&b, 1)]), &[]);
        let total: usize = got.values().map(Vec::len).sum();
        assert_eq!(total, 2, "a /30 has two host addresses: {got:?}");
        let all: Vec<IpAddr> = got.values().flatten().copied().collect();
        assert_ne!(all[0], all[1]);
    }

    #[test]
    fn probe_tells_local_addresses_from_others() {
        assert_eq!(probe("127.0.0.1".parse().unwrap()), Ok(()));
        // TEST-NET-1 (RFC 5737) is on no interface.
        let err = probe("192.0.2.1".parse().unwrap()).unwrap_err();
        assert!(err.contains("not an address"), "{err}");
    }
}
