//! Finding a guest's IPv4 address through Proxmox when neither the static pool nor terraform
//! gave one: LXC `/interfaces`, or the QEMU guest agent's `network-get-interfaces`, polled with
//! backoff until a deadline.
//!
//! Owns which addresses count: loopback, link-local, unspecified, multicast and broadcast
//! addresses never do, nor any address on a container bridge or tunnel inside the guest
//! (docker0, br-*, veth*, virbr*, cni*, ...; Docker's default 172.17.0.0/16 on an unnamed
//! interface). Interfaces named like a real NIC (eth*, en*) are preferred. It must not wait
//! past its deadline, nor keep polling after an error that waiting cannot fix.

use super::api::{GuestIface, GuestKind};
use super::{Client, ProxmoxError};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Interface names inside a guest that carry no address proxdeck can reach.
const BRIDGE_PREFIXES: &[&str] = &[
    "lo",
    "docker",
    "br-",
    "veth",
    "virbr",
    "cni",
    "flannel",
    "cali",
    "lxcbr",
    "lxdbr",
    "podman",
    "kube",
    "cilium",
    "weave",
    "vxlan",
    "tun",
    "tap",
    "wg",
    "tailscale",
    "zt",
];
/// Names of real NICs, preferred when a guest has several usable addresses.
const NIC_PREFIXES: &[&str] = &["eth", "en", "ens", "eno", "enp", "net"];

#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoverError {
    #[error(
        "{label} {vmid} reported no usable IPv4 address within {secs} s{seen}; with DHCP check that the bridge has a DHCP server{agent}, or configure network.pool for static addresses (timeouts.address_secs waits longer)"
    )]
    NoAddress {
        label: &'static str,
        vmid: u32,
        secs: u64,
        /// Empty, or " (it showed: ...)" with the addresses that were ignored and why.
        seen: String,
        /// For VMs: the guest agent hint.
        agent: String,
    },
    #[error("cannot ask Proxmox for the guest's address: {0}")]
    Api(#[from] ProxmoxError),
}

/// Why an address was not used (for the message when none was found).
pub fn unusable(iface: &str, ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_link_local() {
        return Some("link-local");
    }
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Some("not a host address");
    }
    let name = iface.to_ascii_lowercase();
    if BRIDGE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Some("container bridge or tunnel");
    }
    let docker: ipnet::Ipv4Net = "172.17.0.0/16".parse().ok()?;
    if name.is_empty() && docker.contains(&ip) {
        return Some("Docker's default bridge");
    }
    None
}

/// The address to use among a guest's interfaces, and what was seen and ignored.
pub fn pick_ipv4(ifaces: &[GuestIface]) -> (Option<Ipv4Addr>, Vec<String>) {
    let mut ignored = Vec::new();
    let mut best: Option<(u8, Ipv4Addr)> = None;
    for iface in ifaces {
        for a in &iface.addresses {
            let Ok(ip) = a.parse::<Ipv4Addr>() else {
                continue; // IPv6: proxdeck reaches guests over IPv4
            };
            if let Some(why) = unusable(&iface.name, ip) {
                ignored.push(format!("{ip} on {} ({why})", display_name(&iface.name)));
                continue;
            }
            let name = iface.name.to_ascii_lowercase();
            let rank = if NIC_PREFIXES.iter().any(|p| name.starts_with(p)) {
                0
            } else {
                1
            };
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, ip));
            }
        }
    }
    (best.map(|(_, ip)| ip), ignored)
}

fn display_name(name: &str) -> &str {
    if name.is_empty() { "(unnamed)" } else { name }
}

/// An error that waiting will not fix: wrong credentials, no privilege, no such guest.
fn permanent(e: &ProxmoxError) -> bool {
    match e {
        ProxmoxError::Auth { .. } | ProxmoxError::Tls { .. } | ProxmoxError::Setup(_) => true,
        ProxmoxError::Api {
            status, message, ..
        } => *status == 403 || *status == 400 || message.contains("does not exist"),
        _ => false,
    }
}

/// Polls the guest's interfaces until a usable IPv4 address shows or `deadline` passes.
/// `progress` hears about each wait (attempt number, what was seen), for the log.
pub async fn discover_ipv4(
    client: &Client,
    node: &str,
    kind: GuestKind,
    vmid: u32,
    deadline: Duration,
    mut progress: impl FnMut(u32, &str),
) -> Result<Ipv4Addr, DiscoverError> {
    let start = Instant::now();
    let mut delay = Duration::from_secs(1);
    let mut seen = Vec::new();
    let mut last_error: Option<String>;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let answer = match kind {
            GuestKind::Lxc => client.lxc_interfaces(node, vmid).await,
            GuestKind::Qemu => client.agent_interfaces(node, vmid).await,
        };
        let note = match answer {
            Ok(ifaces) => {
                let (ip, ignored) = pick_ipv4(&ifaces);
                if let Some(ip) = ip {
                    return Ok(ip);
                }
                seen = ignored;
                last_error = None;
                if seen.is_empty() {
                    "no IPv4 address yet".to_string()
                } else {
                    format!("only {}", seen.join(", "))
                }
            }
            Err(e) if permanent(&e) => return Err(e.into()),
            Err(e) => {
                // A guest agent that has not started yet answers 500: keep waiting.
                let text = e.to_string();
                last_error = Some(text.clone());
                text
            }
        };
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            let mut seen_text = String::new();
            if !seen.is_empty() {
                seen_text = format!(" (it showed: {})", seen.join(", "));
            } else if let Some(e) = last_error {
                seen_text = format!(" (last answer: {e})");
            }
            return Err(DiscoverError::NoAddress {
                label: kind.label(),
                vmid,
                secs: deadline.as_secs(),
                seen: seen_text,
                agent: if kind == GuestKind::Qemu {
                    " and that the QEMU guest agent runs in the VM (agent enabled, qemu-guest-agent installed)".to_string()
                } else {
                    String::new()
                },
            });
        }
        progress(attempt, &note);
        let wait = delay.min(deadline - elapsed);
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addrs: &[&str]) -> GuestIface {
        GuestIface {
            name: name.into(),
            addresses: addrs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn loopback_link_local_and_bridges_are_ignored() {
        let ifaces = [
            iface("lo", &["127.0.0.1", "::1"]),
            iface("docker0", &["172.17.0.1"]),
            iface("br-1a2b", &["172.18.0.1"]),
            iface("eth0", &["fe80::1", "169.254.3.4", "10.1.2.3"]),
        ];
        let (ip, ignored) = pick_ipv4(&ifaces);
        assert_eq!(ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(ignored.len(), 4, "{ignored:?}");
    }

    #[test]
    fn nothing_usable_says_why() {
        let (ip, ignored) = pick_ipv4(&[
            iface("lo", &["127.0.0.1"]),
            iface("", &["172.17.0.2"]),
            iface("eth0", &["169.254.0.9"]),
        ]);
        assert_eq!(ip, None);
        assert!(ignored.iter().any(|s| s.contains("Docker")), "{ignored:?}");
        assert!(
            ignored.iter().any(|s| s.contains("link-local")),
            "{ignored:?}"
        );
    }

    #[test]
    fn a_real_nic_wins_over_other_interfaces() {
        let (ip, _) = pick_ipv4(&[
            iface("mgmt", &["192.168.5.5"]),
            iface("ens18", &["10.0.0.7"]),
        ]);
        assert_eq!(ip, Some("10.0.0.7".parse().unwrap()));
        let (ip, _) = pick_ipv4(&[iface("mgmt", &["192.168.5.5"])]);
        assert_eq!(ip, Some("192.168.5.5".parse().unwrap()));
    }
}
