//! PLACEHOLDER for the network layer's branch: the real fleet generator replaces this file at
//! merge. Only the interface is shared: [`GenOptions`] and [`generate`].

use crate::lab::fleet::{Faults, Fleet, ListenerSpec, OrgSpec, ServerSpec};
use std::net::Ipv4Addr;

pub struct GenOptions {
    pub servers: usize,
    pub seed: u64,
    pub latency_ms: u64,
    pub exec_ms: u64,
    pub faults: bool,
}

/// A plain fleet of `o.servers` mailbox servers on 127.1.x.y; with `faults`, every tenth one is
/// down. Deterministic in `o.seed` only through the server names.
pub fn generate(o: &GenOptions) -> Fleet {
    let servers = (0..o.servers)
        .map(|i| {
            let n = i + 1;
            let faults = Faults {
                down: o.faults && n % 10 == 0,
                latency_ms: o.latency_ms,
                exec_ms: o.exec_ms,
                ..Faults::default()
            };
            let spec = format!(
                "name = \"EX{:04}\"\naddress = \"{}\"\n",
                n,
                Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8)
            );
            let mut s: ServerSpec = toml::from_str(&spec).unwrap_or_else(|e| unreachable!("{e}"));
            s.faults = faults;
            s
        })
        .collect();
    Fleet {
        org: OrgSpec {
            name: format!("Gen{}", o.seed),
            mitigations_enabled: Some(true),
            error: None,
            servers_error: None,
        },
        accounts: Vec::new(),
        listener: ListenerSpec::default(),
        servers,
    }
}
