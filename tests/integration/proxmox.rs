//! The Proxmox API client and what proxdeck does with it (issue 4), against fakepve over
//! HTTPS with its own CA: token and ticket auth (a revoked ticket renewed transparently),
//! retries of calls safe to repeat and none of the others, timeouts that end in a message,
//! tasks that fail with Proxmox's words, locked guests, TLS trust (CA file, pinned
//! fingerprint, insecure), IP discovery, placement; then through the binary: preflight,
//! resources, sync of 200 guests (twice), start/stop/restart, forget and doctor.

use crate::support::fakepve::{FakePve, NODE, OS_TEMPLATE, PASSWORD};
use crate::support::git::GitServer;
use crate::support::net::{loopback, random_hex};
use crate::support::parts::{Part, skip_without};
use crate::support::process::Finished;
use crate::support::proxdeck::{Proxdeck, write_private};
use proxdeck::config::{Config, ProxmoxConfig};
use proxdeck::engine::proxmox::api::{GuestKind, PowerAction};
use proxdeck::engine::proxmox::ip::{DiscoverError, discover_ipv4};
use proxdeck::engine::proxmox::placement::{self, PlacementError};
use proxdeck::engine::proxmox::{Client, ClientOptions, ProxmoxError, checks};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const QUICK: Duration = Duration::from_secs(120);

/// A `[proxmox]` section for `pve`, authenticated by `auth` lines and trusting by `trust`
/// lines (`None`: the fake's certificate as the CA file).
fn proxmox_toml(pve: &FakePve, auth: Option<&str>, trust: Option<&str>, extra: &str) -> String {
    let auth = auth
        .map(str::to_string)
        .unwrap_or_else(|| format!("api_token = \"{}\"", pve.token()));
    let trust = trust
        .map(str::to_string)
        .unwrap_or_else(|| format!("ca_file = \"{}\"", pve.ca_file().display()));
    format!(
        "[proxmox]\nendpoint = \"{}\"\n{auth}\n{trust}\nnode = \"{NODE}\"\n{extra}\n",
        pve.url()
    )
}

fn config_of(text: &str) -> ProxmoxConfig {
    Config::parse(text, &HashMap::new())
        .unwrap_or_else(|e| panic!("config {text:?}: {e}"))
        .proxmox()
        .expect("proxmox configured")
        .clone()
}

fn client(pve: &FakePve, extra: &str) -> Client {
    Client::new(&config_of(&proxmox_toml(pve, None, None, extra))).expect("client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start_fake(test: &str) -> Option<FakePve> {
    if skip_without(test, &[Part::Fakepve]) {
        return None;
    }
    Some(FakePve::start(loopback()).expect("start fakepve"))
}

#[test]
fn the_client_reads_the_cluster_over_verified_tls_with_a_token() {
    let Some(pve) = start_fake("the_client_reads_the_cluster_over_verified_tls_with_a_token")
    else {
        return;
    };
    pve.ctl(
        "add_node",
        json!({"name": "pve2", "maxmem_gib": 32, "mem_gib": 4, "maxcpu": 16}),
    )
    .unwrap();
    pve.ctl(
        "add_guest",
        json!({"vmid": 150, "type": "lxc", "name": "web", "status": "running",
               "config": {"cores": 2, "memory": 1024, "tags": "proxdeck;web"}}),
    )
    .unwrap();
    pve.ctl(
        "add_guest",
        json!({"vmid": 151, "type": "qemu", "name": "db", "node": "pve2", "status": "stopped"}),
    )
    .unwrap();
    pve.ctl(
        "add_guest",
        json!({"vmid": 9000, "type": "qemu", "name": "debian-cloud", "status": "stopped",
               "template": true}),
    )
    .unwrap();
    let c = client(&pve, "");
    runtime().block_on(async {
        let v = c.version().await.expect("version");
        assert!(v.version.starts_with('9'), "{v:?}");
        assert!(c.identity().contains("root@pam!ci"), "{}", c.identity());
        assert!(!c.identity().contains(pve.secret()));

        let nodes = c.nodes().await.unwrap();
        let pve2 = nodes.iter().find(|n| n.node == "pve2").expect("pve2");
        assert!(pve2.online());
        assert_eq!(pve2.maxcpu, 16);
        assert_eq!(pve2.free_mem(), 28 * 1024 * 1024 * 1024);

        let guests = c.guests().await.unwrap();
        let web = guests.iter().find(|g| g.vmid == Some(150)).expect("CT 150");
        assert_eq!(web.guest_kind(), Some(GuestKind::Lxc));
        assert_eq!(web.name.as_deref(), Some("web"));
        assert_eq!(web.status.as_deref(), Some("running"));
        assert_eq!(web.maxcpu, 2);
        assert_eq!(web.maxmem, 1024 * 1024 * 1024);
        assert!(web.tag_list().contains(&"proxdeck".to_string()));
        let db = guests.iter().find(|g| g.vmid == Some(151)).expect("VM 151");
        assert_eq!(db.guest_kind(), Some(GuestKind::Qemu));
        assert_eq!(db.node.as_deref(), Some("pve2"));

        let storages = c.storages(NODE).await.unwrap();
        let lvm = storages.iter().find(|s| s.storage == "local-lvm").unwrap();
        assert!(lvm.allows("rootdir") && lvm.active && lvm.avail > 0);
        let templates = c.storage_content(NODE, "local", "vztmpl").await.unwrap();
        assert!(
            templates.iter().any(|v| v.volid == OS_TEMPLATE),
            "{templates:?}"
        );
        let nets = c.networks(NODE).await.unwrap();
        assert!(nets.iter().any(|i| i.iface == "vmbr0" && i.is_bridge()));
        let perms = c.permissions().await.unwrap();
        assert!(perms.holds("/vms/150", "VM.PowerMgmt"));

        // VM templates: a template is fine; a plain VM, a container or nothing is named.
        assert_eq!(checks::vm_template_problem(&c, 9000, None).await, None);
        assert_eq!(
            checks::vm_template_problem(&c, 9000, Some(NODE)).await,
            None
        );
        let p = checks::vm_template_problem(&c, 9000, Some("pve2"))
            .await
            .unwrap();
        assert!(p.contains("is on node pve1, not pve2"), "{p}");
        let p = checks::vm_template_problem(&c, 151, None).await.unwrap();
        assert!(
            p.contains("is not a template") && p.contains("qm template 151"),
            "{p}"
        );
        let p = checks::vm_template_problem(&c, 150, None).await.unwrap();
        assert!(p.contains("is a container"), "{p}");
        let p = checks::vm_template_problem(&c, 9999, None).await.unwrap();
        assert!(p.contains("does not exist"), "{p}");

        let st = c.guest_status("pve2", GuestKind::Qemu, 151).await.unwrap();
        assert_eq!(st.status, "stopped");
        // A missing guest: Proxmox's own message, without its trailing newline, not retried.
        let err = c.guest_status(NODE, GuestKind::Lxc, 999).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("Configuration file 'nodes/pve1/lxc/999.conf' does not exist (HTTP 500)"),
            "{text}"
        );
        assert!(!text.contains("\n"), "{text:?}");
    });
    assert_eq!(
        pve.request_count(Some("GET"), "/lxc/999/status/current")
            .unwrap(),
        1,
        "a permanent error was retried"
    );
}

#[test]
fn ticket_logins_are_renewed_after_a_revocation_and_before_expiry() {
    let Some(pve) = start_fake("ticket_logins_are_renewed_after_a_revocation_and_before_expiry")
    else {
        return;
    };
    pve.ctl(
        "add_guest",
        json!({"vmid": 160, "type": "lxc", "status": "stopped"}),
    )
    .unwrap();
    let auth = format!("username = \"root@pam\"\npassword = \"{PASSWORD}\"");
    let config = config_of(&proxmox_toml(&pve, Some(&auth), None, ""));
    assert!(!config.has_token());
    let c = Client::with_options(
        &config,
        ClientOptions {
            ticket_renew_after: Duration::from_secs(2),
        },
    )
    .unwrap();
    assert!(c.identity().contains("ticket"), "{}", c.identity());
    runtime().block_on(async {
        c.version().await.expect("version with a ticket");
        assert_eq!(c.logins(), 1);
        // A write carries the CSRF token.
        let upid = c
            .power(NODE, GuestKind::Lxc, 160, PowerAction::Start, None)
            .await
            .expect("start with a ticket");
        c.wait_task(&upid, "start of CT 160").await.unwrap();
        assert_eq!(c.logins(), 1);

        // The fake forgets every ticket: the next call logs in again by itself.
        pve.ctl("revoke_tickets", Value::Null).unwrap();
        let st = c.guest_status(NODE, GuestKind::Lxc, 160).await.unwrap();
        assert_eq!(st.status, "running");
        assert_eq!(c.logins(), 2);
        // And a write after a revocation too.
        pve.ctl("revoke_tickets", Value::Null).unwrap();
        let upid = c
            .power(NODE, GuestKind::Lxc, 160, PowerAction::Shutdown, Some(10))
            .await
            .expect("shutdown after a revoked ticket");
        c.wait_task(&upid, "shutdown of CT 160").await.unwrap();
        assert_eq!(c.logins(), 3);

        // Before it expires, the ticket is renewed without a 401 first.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        c.version().await.unwrap();
        assert_eq!(c.logins(), 4);
    });
    assert_eq!(
        pve.request_count(Some("POST"), "/access/ticket").unwrap(),
        4
    );
    assert_eq!(
        pve.request_count(Some("POST"), "/lxc/160/status/shutdown")
            .unwrap(),
        2,
        "the refused write is sent again once, after the new login"
    );

    // A wrong password is an auth error naming the settings.
    let bad = config_of(&proxmox_toml(
        &pve,
        Some("username = \"root@pam\"\npassword = \"wrong\""),
        None,
        "",
    ));
    let err = runtime()
        .block_on(Client::new(&bad).unwrap().version())
        .unwrap_err();
    assert!(matches!(err, ProxmoxError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("proxmox.username"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the password leaked: {err}"
    );
}

#[test]
fn faults_retries_timeouts_tasks_and_locks() {
    let Some(pve) = start_fake("faults_retries_timeouts_tasks_and_locks") else {
        return;
    };
    for (vmid, status) in [
        (170, "stopped"),
        (171, "stopped"),
        (172, "running"),
        (173, "stopped"),
    ] {
        pve.ctl(
            "add_guest",
            json!({"vmid": vmid, "type": "lxc", "status": status}),
        )
        .unwrap();
    }
    let c = client(&pve, "retries = 3");
    let rt = runtime();

    // An injected 500 on a read: retried, then it succeeds.
    pve.fail("GET", "/version", 500, "temporary failure", Some(2))
        .unwrap();
    rt.block_on(c.version()).expect("retried until it worked");
    assert_eq!(pve.request_count(Some("GET"), "/version").unwrap(), 3);

    // More failures than retries: Proxmox's message, after 1 + 3 tries.
    pve.fail("GET", "/nodes", 503, "service unavailable", Some(10))
        .unwrap();
    let err = rt.block_on(c.nodes()).unwrap_err();
    assert!(err.to_string().contains("service unavailable"), "{err}");
    assert_eq!(pve.request_count(Some("GET"), "/nodes").unwrap(), 4);
    pve.ctl("clear_failures", Value::Null).unwrap();

    // An injected 500 on a write: not retried.
    pve.fail(
        "POST",
        "/lxc/170/status/start",
        500,
        "boom on start",
        Some(1),
    )
    .unwrap();
    let err = rt
        .block_on(c.power(NODE, GuestKind::Lxc, 170, PowerAction::Start, None))
        .unwrap_err();
    assert!(err.to_string().contains("boom on start"), "{err}");
    assert_eq!(
        pve.request_count(Some("POST"), "/lxc/170/status/start")
            .unwrap(),
        1
    );
    let st = rt
        .block_on(c.guest_status(NODE, GuestKind::Lxc, 170))
        .unwrap();
    assert_eq!(st.status, "stopped");

    // A task that ends in error: its exit status, in Proxmox's words, is the error.
    let message = "startup for container '171' failed: lxc-start exited with code 1";
    pve.ctl(
        "set_guest",
        json!({"vmid": 171, "attrs": {"start_error": message}}),
    )
    .unwrap();
    let err = rt
        .block_on(async {
            let upid = c
                .power(NODE, GuestKind::Lxc, 171, PowerAction::Start, None)
                .await?;
            c.wait_task(&upid, "start of CT 171").await
        })
        .unwrap_err();
    assert!(matches!(err, ProxmoxError::Task { .. }), "{err:?}");
    assert!(err.to_string().contains("start of CT 171 failed"), "{err}");
    assert!(err.to_string().contains(message), "{err}");

    // A locked guest: Proxmox refuses with its reason.
    pve.ctl("lock", json!({"vmid": 172, "lock": "backup"}))
        .unwrap();
    let err = rt
        .block_on(async {
            let upid = c
                .power(NODE, GuestKind::Lxc, 172, PowerAction::Shutdown, Some(5))
                .await?;
            c.wait_task(&upid, "shutdown of CT 172").await
        })
        .unwrap_err();
    assert!(err.to_string().contains("CT is locked (backup)"), "{err}");

    // The config lock held by another task: the start task waits, then fails with PVE's words.
    pve.ctl("set", json!({"attrs": {"time_scale": 0.2, "lock_wait": 2}}))
        .unwrap();
    pve.ctl("hold_config_lock", json!({"vmid": 173, "secs": 600}))
        .unwrap();
    let err = rt
        .block_on(async {
            let upid = c
                .power(NODE, GuestKind::Lxc, 173, PowerAction::Start, None)
                .await?;
            c.wait_task(&upid, "start of CT 173").await
        })
        .unwrap_err();
    assert!(err.to_string().contains("got timeout"), "{err}");

    // A slow network: a timeout message within a bounded time, not a hang.
    pve.ctl("slow_network", json!({"latency": 20})).unwrap(); // 20 PVE s = 4 s here
    let slow = client(&pve, "timeout_secs = 1\nretries = 1");
    let started = Instant::now();
    let err = rt.block_on(slow.version()).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, ProxmoxError::Timeout { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("did not answer GET /version within 1 s") && text.contains("2 attempts"),
        "{text}"
    );
    assert!(text.contains("proxmox.timeout_secs"), "{text}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    // The same on a write: one attempt only.
    let err = rt
        .block_on(slow.power(NODE, GuestKind::Lxc, 170, PowerAction::Start, None))
        .unwrap_err();
    assert!(matches!(err, ProxmoxError::Timeout { .. }), "{err:?}");
    assert!(!err.to_string().contains("attempts"), "{err}");
    pve.ctl("slow_network", json!({"latency": 0})).unwrap();
}

#[test]
fn tls_is_verified_by_ca_file_or_pinned_fingerprint() {
    if skip_without(
        "tls_is_verified_by_ca_file_or_pinned_fingerprint",
        &[Part::Fakepve],
    ) {
        return;
    }
    let pve = FakePve::start(loopback()).expect("start fakepve");
    let other = FakePve::start(loopback()).expect("start a second fakepve");
    let rt = runtime();
    let version_with = |trust: &str| {
        let config = config_of(&proxmox_toml(&pve, None, Some(trust), ""));
        rt.block_on(Client::new(&config).unwrap().version())
    };

    // The right CA: accepted.
    version_with(&format!("ca_file = \"{}\"", pve.ca_file().display())).expect("own CA");
    // Another CA: refused, with what to do.
    let err = version_with(&format!("ca_file = \"{}\"", other.ca_file().display())).unwrap_err();
    assert!(matches!(err, ProxmoxError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("proxmox.ca_file"), "{text}");
    // No CA at all: the system roots do not know a self-signed certificate.
    let err = version_with("").unwrap_err();
    assert!(matches!(err, ProxmoxError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("proxmox.fingerprint"), "{err}");

    // The certificate's own fingerprint (computed by Python from the fake's file): accepted.
    let fingerprint = pve.fingerprint().unwrap();
    version_with(&format!("fingerprint = \"{fingerprint}\"")).expect("pinned fingerprint");
    // Lower case and without colons works too.
    let plain = fingerprint.replace(':', "").to_lowercase();
    version_with(&format!("fingerprint = \"{plain}\"")).expect("plain fingerprint");
    // The other fake's fingerprint: refused, naming what the server presented.
    let wrong = other.fingerprint().unwrap();
    let err = version_with(&format!("fingerprint = \"{wrong}\"")).unwrap_err();
    assert!(matches!(err, ProxmoxError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&fingerprint), "{text}");
    assert!(text.contains(&wrong), "{text}");
    // In words, not rustls's identifiers.
    assert!(
        text.contains("fingerprint is not the one pinned in proxmox.fingerprint"),
        "{text}"
    );
    for debug in ["OtherError", "PinMismatch", "Other("] {
        assert!(!text.contains(debug), "{debug} in {text}");
    }
    // Another CA's certificate (the same issuer name, another key) is explained in words too.
    let err = version_with(&format!("ca_file = \"{}\"", other.ca_file().display())).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("signature does not verify") || text.contains("issuer this machine"),
        "{text}"
    );
    for debug in ["BadSignature", "UnknownIssuer"] {
        assert!(!text.contains(debug), "{debug} in {text}");
    }
    // A pin wins over insecure.
    let err = version_with(&format!("fingerprint = \"{wrong}\"\ninsecure = true")).unwrap_err();
    assert!(matches!(err, ProxmoxError::Tls { .. }), "{err:?}");
    // insecure alone: accepted, and says so.
    let config = config_of(&proxmox_toml(&pve, None, Some("insecure = true"), ""));
    let c = Client::new(&config).unwrap();
    assert!(c.tls_mode().to_string().contains("NOT VERIFIED"));
    rt.block_on(c.version()).expect("insecure");
}

#[test]
fn ip_discovery_ignores_loopback_link_local_and_bridges_and_waits_for_late_addresses() {
    let Some(pve) = start_fake(
        "ip_discovery_ignores_loopback_link_local_and_bridges_and_waits_for_late_addresses",
    ) else {
        return;
    };
    pve.ctl(
        "add_guest",
        json!({"vmid": 180, "type": "lxc", "status": "running",
               "config": {"net0": "name=eth0,bridge=vmbr0,ip=192.0.2.50/24"}}),
    )
    .unwrap();
    let noisy = json!([
        {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
        {"name": "docker0", "ip-addresses": [{"ip-address": "172.17.0.1", "ip-address-type": "ipv4", "prefix": 16}]},
        {"name": "eth0", "ip-addresses": [
            {"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "ipv6", "prefix": 64},
            {"ip-address": "169.254.10.20", "ip-address-type": "ipv4", "prefix": 16}]}
    ]);
    pve.ctl(
        "add_guest",
        json!({"vmid": 181, "type": "qemu", "status": "running",
               "agent": {"interfaces": noisy}}),
    )
    .unwrap();
    pve.ctl(
        "add_guest",
        json!({"vmid": 182, "type": "qemu", "status": "running"}),
    )
    .unwrap();
    let c = client(&pve, "");
    let rt = runtime();

    let ip = rt
        .block_on(discover_ipv4(
            &c,
            NODE,
            GuestKind::Lxc,
            180,
            Duration::from_secs(10),
            |_, _| {},
        ))
        .unwrap();
    assert_eq!(ip.to_string(), "192.0.2.50");

    // Only unusable addresses at first; eth0 gets one 1.5 s later.
    let mut late = noisy.clone();
    late[2]["ip-addresses"]
        .as_array_mut()
        .unwrap()
        .push(json!({"ip-address": "10.20.30.40", "ip-address-type": "ipv4", "prefix": 24}));
    pve.ctl(
        "later",
        json!({"vmid": 181, "delay": 1.5, "agent": {"interfaces": late}}),
    )
    .unwrap();
    let mut notes = Vec::new();
    let started = Instant::now();
    let ip = rt
        .block_on(discover_ipv4(
            &c,
            NODE,
            GuestKind::Qemu,
            181,
            Duration::from_secs(20),
            |_, note| notes.push(note.to_string()),
        ))
        .unwrap();
    assert_eq!(ip.to_string(), "10.20.30.40");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!notes.is_empty());
    assert!(
        notes[0].contains("127.0.0.1 on lo (loopback)")
            && notes[0].contains("172.17.0.1 on docker0")
            && notes[0].contains("169.254.10.20 on eth0 (link-local)"),
        "{notes:?}"
    );

    // No guest agent: polled until the deadline, then a message naming the agent.
    let started = Instant::now();
    let err = rt
        .block_on(discover_ipv4(
            &c,
            NODE,
            GuestKind::Qemu,
            182,
            Duration::from_secs(2),
            |_, _| {},
        ))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(matches!(err, DiscoverError::NoAddress { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("VM 182") && text.contains("guest agent"),
        "{text}"
    );
    assert!(text.contains("network.pool"), "{text}");

    // A guest that does not exist: no waiting.
    let started = Instant::now();
    let err = rt
        .block_on(discover_ipv4(
            &c,
            NODE,
            GuestKind::Lxc,
            999,
            Duration::from_secs(30),
            |_, _| {},
        ))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn placement_picks_the_online_node_with_most_free_memory_that_fits() {
    let Some(pve) = start_fake("placement_picks_the_online_node_with_most_free_memory_that_fits")
    else {
        return;
    };
    // pve1: fakepve's 8 GiB with 2 used.
    for node in [
        json!({"name": "pve2", "maxmem_gib": 64, "mem_gib": 8}),
        json!({"name": "pve3", "maxmem_gib": 128, "mem_gib": 120}),
        json!({"name": "pve4", "maxmem_gib": 512, "mem_gib": 1, "online": false}),
    ] {
        pve.ctl("add_node", node).unwrap();
    }
    let c = client(&pve, "");
    let need = |memory_mib: u32| placement::Need {
        cores: 2,
        memory_mib,
        disk_gib: 8,
        datastore: "local-lvm".into(),
    };
    let rt = runtime();
    let p = rt.block_on(placement::place(&c, &need(2048))).unwrap();
    assert_eq!(p.node, "pve2");
    assert!(
        p.passed_over.iter().any(|w| w.contains("pve4 is offline")),
        "{:?}",
        p.passed_over
    );
    let err = rt
        .block_on(placement::place(&c, &need(100 * 1024)))
        .unwrap_err();
    assert!(matches!(err, PlacementError::NoFit { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("pve2 has 57344 MiB free memory"), "{text}");
    assert!(text.contains("pve4 is offline"), "{text}");
}

// ---- through the binary ------------------------------------------------------------------

fn write_config(path: &Path, proxmox: &str, guest: &str) {
    write_private(path, &format!("{proxmox}\n[guest]\n{guest}\n")).unwrap();
}

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e})\n{}", done.describe()))
}

#[test]
fn preflight_catches_offline_nodes_missing_storage_bridge_template_and_privileges() {
    if skip_without(
        "preflight_catches_offline_nodes_missing_storage_bridge_template_and_privileges",
        &[Part::Fakepve, Part::Git],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-preflight-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let pve = FakePve::start(loopback()).expect("start fakepve");
    let git = GitServer::start(loopback()).expect("git daemon");
    let app = git.add_flask_app("preflight-app").unwrap();
    pve.ctl("add_node", json!({"name": "pve2"})).unwrap();
    pve.ctl("set_node_offline", json!({"node": "pve2"}))
        .unwrap();
    pve.ctl(
        "add_node",
        json!({"name": "pve3", "maxmem_gib": 256, "mem_gib": 8}),
    )
    .unwrap();
    let good_guest =
        format!("datastore = \"local-lvm\"\nbridge = \"vmbr0\"\nos_template = \"{OS_TEMPLATE}\"");
    let deploy = |config: &Path, name: &str, node: Option<&str>| -> (Finished, Proxdeck) {
        let data = root.join(format!("data-{name}"));
        let proxdeck = Proxdeck::new(config.to_path_buf(), data, root);
        let mut args = vec![
            "deploy",
            "--repo",
            &app.git_url,
            "--framework",
            "flask",
            "--name",
            name,
        ];
        if let Some(n) = node {
            args.extend(["--node", n]);
        }
        let done = proxdeck.run(&args, QUICK).unwrap();
        assert!(
            !done.success(),
            "{name}: deploy passed: {}",
            done.describe()
        );
        (done, proxdeck)
    };

    // An offline node.
    let offline = root.join("offline.toml");
    write_config(&offline, &proxmox_toml(&pve, None, None, ""), &good_guest);
    let (done, proxdeck) = deploy(&offline, "offline", Some("pve2"));
    assert!(
        done.stderr.contains("preflight") && done.stderr.contains("node pve2 is offline"),
        "{}",
        done.describe()
    );
    let shown = proxdeck.run(&["show", "offline", "--json"], QUICK).unwrap();
    let shown = json_of(&shown, "show");
    assert_eq!(shown["status"], "FAILED", "{shown}");
    assert_eq!(shown["stage"], "preflight", "{shown}");
    assert!(
        !proxdeck.data_dir.join("workspaces").exists()
            || std::fs::read_dir(proxdeck.data_dir.join("workspaces"))
                .unwrap()
                .next()
                .is_none(),
        "a workspace was rendered after a failed preflight"
    );

    // A node that does not exist.
    let (done, _) = deploy(&offline, "nonode", Some("pve9"));
    assert!(
        done.stderr.contains("node pve9 does not exist") && done.stderr.contains("pve1"),
        "{}",
        done.describe()
    );

    // Missing storage, bridge and template, all reported at once, one line each.
    let broken = root.join("broken.toml");
    write_config(
        &broken,
        &proxmox_toml(&pve, None, None, ""),
        "datastore = \"nope\"\nbridge = \"vmbr9\"\nos_template = \"local:vztmpl/missing-1.0.tar.zst\"",
    );
    let (done, proxdeck) = deploy(&broken, "broken", None);
    for want in [
        "3 problems",
        "storage nope does not exist on node pve1",
        "bridge vmbr9 does not exist on node pve1; it has vmbr0",
        "the OS template local:vztmpl/missing-1.0.tar.zst is not on storage local",
    ] {
        assert!(
            done.stderr.contains(want),
            "{want:?} missing: {}",
            done.describe()
        );
    }
    let logs = proxdeck.run(&["logs", "broken"], QUICK).unwrap();
    assert_eq!(
        logs.stdout.matches("! preflight: ").count(),
        3,
        "one log line per problem:\n{}",
        logs.stdout
    );

    // A storage that does not allow containers.
    pve.ctl(
        "storage",
        json!({"name": "isos", "attrs": {"content": "iso"}}),
    )
    .unwrap();
    let wrong = root.join("wrong.toml");
    write_config(
        &wrong,
        &proxmox_toml(&pve, None, None, ""),
        &format!("datastore = \"isos\"\nbridge = \"vmbr0\"\nos_template = \"{OS_TEMPLATE}\""),
    );
    let (done, _) = deploy(&wrong, "wrongcontent", None);
    assert!(
        done.stderr
            .contains("storage isos on node pve1 does not allow rootdir"),
        "{}",
        done.describe()
    );

    // Too much memory for the node.
    let (done, _) = {
        let data = root.join("data-big");
        let proxdeck = Proxdeck::new(offline.clone(), data, root);
        let done = proxdeck
            .run(
                &[
                    "deploy",
                    "--repo",
                    &app.git_url,
                    "--framework",
                    "flask",
                    "--name",
                    "big",
                    "--memory",
                    "65536",
                ],
                QUICK,
            )
            .unwrap();
        (done, proxdeck)
    };
    assert!(!done.success());
    assert!(
        done.stderr
            .contains("node pve1 has 6144 MiB of free memory, the guest wants 65536 MiB"),
        "{}",
        done.describe()
    );

    // auto: placed on pve3 (the most free memory), then the broken bridge stops it there.
    let auto = root.join("auto.toml");
    write_config(
        &auto,
        &proxmox_toml(&pve, None, None, ""),
        &format!("datastore = \"local-lvm\"\nbridge = \"vmbr9\"\nos_template = \"{OS_TEMPLATE}\""),
    );
    let (done, proxdeck) = deploy(&auto, "auto", Some("auto"));
    assert!(
        done.stdout.contains("placed on node pve3"),
        "{}",
        done.describe()
    );
    assert!(
        done.stderr
            .contains("bridge vmbr9 does not exist on node pve3"),
        "{}",
        done.describe()
    );
    let shown = json_of(
        &proxdeck.run(&["show", "auto", "--json"], QUICK).unwrap(),
        "show",
    );
    assert_eq!(shown["node"], "pve3", "{shown}");

    // A privilege-separated token with no ACL entries sees empty lists: said plainly.
    let secret = format!("pdtestsecret-{}", random_hex(16));
    pve.ctl(
        "add_token",
        json!({"tokenid": "deploy@pve!ci", "secret": secret}),
    )
    .unwrap();
    pve.ctl(
        "grant",
        json!({"user": "auditor@pve", "path": "/", "privs": ["VM.Audit"]}),
    )
    .unwrap();
    let privsep = root.join("privsep.toml");
    write_config(
        &privsep,
        &proxmox_toml(
            &pve,
            Some(&format!("api_token = \"deploy@pve!ci={secret}\"")),
            None,
            "",
        ),
        &good_guest,
    );
    let (done, _) = deploy(&privsep, "privsep", None);
    assert!(
        done.stderr.contains("holds no privileges") && done.stderr.contains("privilege-separated"),
        "{}",
        done.describe()
    );
    assert!(!done.stderr.contains(&secret) && !done.stdout.contains(&secret));

    // Some privileges but not all: the missing ones are named.
    pve.ctl(
        "grant",
        json!({"user": "deploy@pve!ci", "path": "/vms", "privs": ["VM.Audit", "VM.Allocate"]}),
    )
    .unwrap();
    let (done, _) = deploy(&privsep, "partial", None);
    assert!(
        done.stderr.contains("lacks privileges")
            && done.stderr.contains("VM.PowerMgmt on /vms")
            && done
                .stderr
                .contains("Datastore.AllocateSpace on /storage/local-lvm"),
        "{}",
        done.describe()
    );
    assert!(
        pve.containers(NODE).unwrap().is_empty(),
        "a container was created although preflight failed"
    );

    // A vmid reserved for a deployment but taken on the cluster by another guest (and not
    // this deployment's own: no terraform state) is replaced by a free one.
    pve.ctl(
        "add_guest",
        json!({"vmid": 100, "type": "lxc", "name": "squatter", "status": "running"}),
    )
    .unwrap();
    let data = root.join("data-vmid");
    let proxdeck = Proxdeck::new(auto.clone(), data.clone(), root);
    {
        use proxdeck::domain::{Deployment, DeploymentId, Stage, Status};
        let mut store = proxdeck::store::Store::open(&data.join("proxdeck.db")).unwrap();
        let d = Deployment {
            id: DeploymentId("vmid11".into()),
            name: "vmidtest".into(),
            repo: app.git_url.clone(),
            framework: "flask".into(),
            cores: 1,
            memory_mib: 512,
            disk_gib: 4,
            port: 5000,
            node: Some(NODE.into()),
            vmid: Some(100),
            created_at: 1,
            updated_at: 1,
            ..Deployment::default()
        };
        store.insert_deployment(&d).unwrap();
        let taken = std::collections::HashSet::new();
        assert_eq!(store.allocate_vmid(100..=200, &d.id, &taken).unwrap(), 100);
        store
            .transition(&d.id, Status::Failed, Some(Stage::Preflight), Some("test"))
            .unwrap();
    }
    // The bridge is still broken, so the retry stops at preflight, after the vmid check.
    let done = proxdeck.run(&["retry", "vmidtest"], QUICK).unwrap();
    assert!(!done.success(), "{}", done.describe());
    assert!(
        done.stdout.contains("vmid 100 is taken on the cluster by CT 100 (squatter) on pve1: reserved vmid 101 instead"),
        "{}",
        done.describe()
    );
    let shown = json_of(
        &proxdeck
            .run(&["show", "vmidtest", "--json"], QUICK)
            .unwrap(),
        "show",
    );
    assert_eq!(shown["vmid"], 101, "{shown}");
}

#[test]
fn sync_imports_two_hundred_guests_once_and_power_actions_follow() {
    if skip_without(
        "sync_imports_two_hundred_guests_once_and_power_actions_follow",
        &[Part::Fakepve],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-sync-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let pve = FakePve::start(loopback()).expect("start fakepve");
    pve.ctl(
        "add_guests",
        json!({"count": 200, "start": 1000, "nodes": ["pve1", "pve2"]}),
    )
    .unwrap();
    pve.ctl(
        "add_guest",
        json!({"vmid": 9000, "type": "qemu", "name": "tmpl", "status": "stopped", "template": true}),
    )
    .unwrap();
    let config = root.join("config.toml");
    write_config(&config, &proxmox_toml(&pve, None, None, ""), "");
    let proxdeck = Proxdeck::new(config, root.join("data"), root);
    let run = |args: &[&str]| {
        let done = proxdeck.run(args, QUICK).unwrap();
        assert!(done.success(), "{args:?}: {}", done.describe());
        done
    };

    // Before: every guest is there, none known to proxdeck.
    let view = json_of(&run(&["resources", "--json"]), "resources");
    let guests = view["guests"].as_array().expect("guests");
    assert_eq!(guests.len(), 201);
    assert!(
        guests
            .iter()
            .all(|g| g["deployment"].is_null() && g["managed"] == false)
    );
    let g1003 = guests.iter().find(|g| g["vmid"] == 1003).unwrap();
    assert_eq!(g1003["type"], "qemu", "{g1003}");
    assert_eq!(g1003["node"], "pve2", "{g1003}");
    assert!(g1003["maxmem"].as_u64().unwrap() > 0, "{g1003}");
    assert!(view["nodes"].as_array().unwrap().len() >= 2);
    let table = run(&["resources"]);
    assert!(
        table.stdout.contains("201 guests") && table.stdout.contains("guest-1003"),
        "{}",
        table.stdout
    );

    // First sync: 200 imported, the template skipped.
    let first = json_of(&run(&["sync", "--json"]), "sync");
    assert_eq!(first["imported"].as_array().unwrap().len(), 200, "{first}");
    assert_eq!(first["templates_skipped"], 1);
    // Second sync: nothing changes.
    let second = json_of(&run(&["sync", "--json"]), "sync again");
    for key in ["imported", "updated", "missing", "returned"] {
        assert!(
            second[key].as_array().unwrap().is_empty(),
            "{key} on the second sync: {second}"
        );
    }
    assert_eq!(second["unchanged"], 200);
    let list = json_of(&run(&["list", "--json"]), "list");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 200);
    let vmids: std::collections::HashSet<u64> =
        list.iter().map(|d| d["vmid"].as_u64().unwrap()).collect();
    assert_eq!(vmids.len(), 200, "duplicate vmids");
    assert!(list.iter().all(|d| d["origin"] == "imported"));
    let by_vmid = |vmid: u64| -> Value {
        list.iter()
            .find(|d| d["vmid"].as_u64() == Some(vmid))
            .cloned()
            .unwrap()
    };
    // 1000 is a stopped container on pve1; 1001 a running VM on pve2.
    let ct = by_vmid(1000);
    assert_eq!(
        (ct["status"].as_str(), ct["node"].as_str()),
        (Some("STOPPED"), Some("pve1"))
    );
    assert_eq!(ct["guest_type"], "lxc");
    let vm = by_vmid(1001);
    assert_eq!(
        (vm["status"].as_str(), vm["guest_type"].as_str()),
        (Some("RUNNING"), Some("vm"))
    );
    let view = json_of(&run(&["resources", "--json"]), "resources");
    let tracked = view["guests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["deployment"]["origin"] == "imported" && g["managed"] == false)
        .count();
    assert_eq!(tracked, 200);

    // Power: start, stop and restart an imported container; the status follows.
    let ct_id = ct["id"].as_str().unwrap().to_string();
    let started = json_of(&run(&["start", &ct_id, "--json"]), "start");
    assert_eq!(started["status"], "RUNNING");
    assert_eq!(pve.guest(1000).unwrap()["status"], "running");
    let stopped = json_of(&run(&["stop", &ct_id, "--json"]), "stop");
    assert_eq!(stopped["status"], "STOPPED");
    assert_eq!(pve.guest(1000).unwrap()["status"], "stopped");
    let restarted = json_of(&run(&["restart", &ct_id, "--json"]), "restart");
    assert_eq!(restarted["status"], "RUNNING");
    // Restarting a running container reboots it.
    let rebooted = run(&["restart", &ct_id]);
    assert!(rebooted.stdout.contains("(reboot)"), "{}", rebooted.stdout);
    assert_eq!(pve.guest(1000).unwrap()["status"], "running");
    let vm_id = vm["id"].as_str().unwrap().to_string();
    run(&["restart", &vm_id]);
    assert_eq!(pve.guest(1001).unwrap()["status"], "running");
    let logs = run(&["logs", &ct_id]);
    assert!(logs.stdout.contains("task OK"), "{}", logs.stdout);

    // A locked guest: the stop fails with Proxmox's reason and the status stays.
    pve.ctl("lock", json!({"vmid": 1000, "lock": "backup"}))
        .unwrap();
    let done = proxdeck.run(&["stop", &ct_id], QUICK).unwrap();
    assert!(!done.success());
    assert!(
        done.stderr.contains("CT is locked (backup)"),
        "{}",
        done.describe()
    );
    // ... and says what to do next, in the output and in the deployment's log.
    assert!(
        done.stderr.contains("\nnext: ")
            && done.stderr.contains("Task History")
            && done
                .stderr
                .contains(&format!("`proxdeck stop {ct_id}` again")),
        "{}",
        done.describe()
    );
    let logs = run(&["logs", &ct_id]);
    assert!(logs.stdout.contains("next: "), "{}", logs.stdout);
    let shown = json_of(&run(&["show", &ct_id, "--json"]), "show");
    assert_eq!(shown["status"], "RUNNING");
    pve.ctl("unlock", json!({"vmid": 1000})).unwrap();

    // Changes on the cluster: one guest stopped out of band, two removed.
    pve.ctl(
        "set_guest",
        json!({"vmid": 1002, "attrs": {"status": "stopped"}}),
    )
    .unwrap();
    for vmid in [1004, 1005] {
        pve.ctl("remove_guest", json!({"vmid": vmid})).unwrap();
    }
    let third = json_of(&run(&["sync", "--json"]), "third sync");
    assert_eq!(third["updated"].as_array().unwrap().len(), 1, "{third}");
    assert_eq!(third["updated"][0]["vmid"], 1002);
    assert_eq!(third["missing"].as_array().unwrap().len(), 2, "{third}");
    assert!(third["imported"].as_array().unwrap().is_empty());
    let fourth = json_of(&run(&["sync", "--json"]), "fourth sync");
    for key in ["imported", "updated", "missing", "returned"] {
        assert!(
            fourth[key].as_array().unwrap().is_empty(),
            "{key}: {fourth}"
        );
    }
    let gone = by_vmid(1004);
    let gone_id = gone["id"].as_str().unwrap();
    let shown = json_of(&run(&["show", gone_id, "--json"]), "show missing");
    assert!(shown["missing_since"].as_i64().is_some(), "{shown}");

    // forget: the missing entry goes; a deployment proxdeck made is refused elsewhere.
    run(&["forget", gone_id]);
    let done = proxdeck.run(&["show", gone_id], QUICK).unwrap();
    assert!(!done.success(), "{}", done.describe());
    let list = json_of(&run(&["list", "--json"]), "list after forget");
    assert_eq!(list.as_array().unwrap().len(), 199);
    // An imported guest that still exists can be forgotten too; the next sync brings it back.
    run(&["forget", &vm_id]);
    let again = json_of(&run(&["sync", "--json"]), "sync after forget");
    assert_eq!(again["imported"].as_array().unwrap().len(), 1, "{again}");
    assert_eq!(again["imported"][0]["vmid"], 1001);

    // The audit log holds the sync, the power actions and the forget.
    let audit = std::fs::read_to_string(proxdeck.data_dir.join("audit.log")).unwrap();
    for action in [
        "\"sync\"",
        "\"start\"",
        "\"stop\"",
        "\"restart\"",
        "\"forget\"",
    ] {
        assert!(
            audit.contains(action),
            "{action} not in the audit log:\n{audit}"
        );
    }
}

#[test]
fn doctor_shows_insecure_tls_and_credentials_that_see_nothing() {
    if skip_without(
        "doctor_shows_insecure_tls_and_credentials_that_see_nothing",
        &[Part::Fakepve],
    ) {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("proxdeck-doctor-")
        .tempdir()
        .unwrap();
    let root = work.path();
    let pve = FakePve::start(loopback()).expect("start fakepve");
    let guest = format!("os_template = \"{OS_TEMPLATE}\"");

    let good = root.join("good.toml");
    write_config(&good, &proxmox_toml(&pve, None, None, ""), &guest);
    let proxdeck = Proxdeck::new(good, root.join("data-good"), root);
    let done = proxdeck.run(&["doctor", "--json"], QUICK).unwrap();
    let checks = json_of(&done, "doctor");
    let failed: Vec<&Value> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail" && c["check"] != "terraform")
        .collect();
    assert!(failed.is_empty(), "{}", done.describe());
    assert!(
        done.stdout.contains("verified against the CA file"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("storage local-lvm, bridge vmbr0"),
        "{}",
        done.stdout
    );

    let insecure = root.join("insecure.toml");
    write_config(
        &insecure,
        &proxmox_toml(&pve, None, Some("insecure = true"), ""),
        &guest,
    );
    let proxdeck = Proxdeck::new(insecure, root.join("data-insecure"), root);
    let done = proxdeck.run(&["doctor"], QUICK).unwrap();
    assert!(
        done.stdout.contains("WARN tls") && done.stdout.contains("NOT VERIFIED"),
        "{}",
        done.describe()
    );

    let secret = format!("pdtestsecret-{}", random_hex(16));
    pve.ctl(
        "add_token",
        json!({"tokenid": "ci@pve!nothing", "secret": secret}),
    )
    .unwrap();
    pve.ctl(
        "grant",
        json!({"user": "auditor@pve", "path": "/", "privs": ["VM.Audit"]}),
    )
    .unwrap();
    let privsep = root.join("privsep.toml");
    write_config(
        &privsep,
        &proxmox_toml(
            &pve,
            Some(&format!("api_token = \"ci@pve!nothing={secret}\"")),
            None,
            "",
        ),
        &guest,
    );
    let proxdeck = Proxdeck::new(privsep, root.join("data-privsep"), root);
    let done = proxdeck.run(&["doctor"], QUICK).unwrap();
    assert!(!done.success(), "{}", done.describe());
    assert!(
        done.stdout.contains("FAIL privileges") && done.stdout.contains("holds no privileges"),
        "{}",
        done.describe()
    );
    let done = proxdeck.run(&["sync"], QUICK).unwrap();
    assert!(!done.success());
    assert!(
        done.stderr.contains("sees no privileges"),
        "{}",
        done.describe()
    );
    assert!(!done.stderr.contains(&secret));

    // Unreachable: a clear message, quickly.
    let dead = root.join("dead.toml");
    write_private(
        &dead,
        "[proxmox]\nendpoint = \"https://127.0.0.1:9/\"\napi_token = \"root@pam!t=secret\"\ntimeout_secs = 2\nretries = 1\n",
    )
    .unwrap();
    let proxdeck = Proxdeck::new(dead, root.join("data-dead"), root);
    let started = Instant::now();
    let done = proxdeck.run(&["resources"], QUICK).unwrap();
    assert!(!done.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        done.stderr
            .contains("cannot reach Proxmox at https://127.0.0.1:9"),
        "{}",
        done.describe()
    );
}
