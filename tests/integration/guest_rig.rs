//! The real-guest rig on its own (`tests/support/guests.rs`): asked over its socket the way
//! the stand-in templates ask, it boots a fresh Debian 13 from the cached root filesystem with
//! systemd as PID 1 and sshd on the guest's own loopback address, letting in the key it was
//! given; the guest is as fresh as a Proxmox template (no git, no Python venv, no Node, no
//! package lists), has its own host keys and machine id, keeps its files across a power
//! cycle, and is gone (its folder, its overlay) once deleted.

use crate::support::guests::{Release, Rig, cache_dir, rootfs, skip_without_rig};
use crate::support::net::{loopback, random_hex};
use crate::support::parts::{Part, skip_without};
use crate::support::process::{Finished, run_ok, run_with_timeout};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One request to the rig, as pve_ct.py sends it.
fn ask(socket: &Path, request: Value) -> Value {
    let mut stream = UnixStream::connect(socket).expect("connect to the rig");
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    writeln!(stream, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad answer {line:?}: {e}"))
}

fn ssh(key: &Path, addr: std::net::Ipv4Addr, port: u16, script: &str) -> Finished {
    run_with_timeout(
        Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(key)
            .args(["-p", &port.to_string()])
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"])
            .arg(format!("root@{addr}"))
            .arg(script),
        Duration::from_secs(120),
    )
    .unwrap()
}

#[test]
fn the_rig_boots_a_fresh_debian_guest_and_removes_it() {
    let test = "the_rig_boots_a_fresh_debian_guest_and_removes_it";
    if skip_without(test, &[Part::Sshd, Part::SshClient]) || skip_without_rig(test) {
        return;
    }
    rootfs(Release::Debian13, false).expect("the Debian 13 root filesystem");
    let rig = Rig::start().expect("start the rig");
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("id");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    )
    .unwrap();
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let addr = loopback();
    let port = rig.ssh_port();

    // Something else than a Debian template is refused, naming it.
    let refused = ask(
        &rig.socket(),
        json!({"op": "boot", "vmid": 41, "kind": "lxc", "address": format!("{addr}/8"),
               "os_template": "local:vztmpl/alpine-3.20-default_20240908_amd64.tar.xz",
               "hostname": "x", "ssh_public_key": public.trim()}),
    );
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("alpine"),
        "{refused}"
    );

    let booted = ask(
        &rig.socket(),
        json!({"op": "boot", "vmid": 42, "kind": "lxc", "address": format!("{addr}/8"),
               "os_template": "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst",
               "hostname": "rig-test", "ssh_public_key": public.trim()}),
    );
    assert_eq!(booted["ok"], true, "{booted}");
    assert_eq!(booted["release"], "trixie", "{booted}");
    assert!(rig.has(42));
    let dir = rig.with_guest(42, |g| Ok(g.dir().to_path_buf())).unwrap();
    assert!(dir.starts_with(cache_dir().unwrap().join("guests")));

    let marker = random_hex(12);
    let done = ssh(
        &key,
        addr,
        port,
        &format!(
            "systemctl is-system-running --wait; cat /proc/1/comm; hostname; \
             . /etc/os-release; echo $VERSION_CODENAME; \
             for t in git node python3; do command -v $t >/dev/null && echo has-$t; done; \
             python3 -c 'import venv, ensurepip' 2>/dev/null && echo has-venv; \
             ls /var/lib/apt/lists | grep -c Packages || true; \
             echo {marker} > /root/marker"
        ),
    );
    assert!(done.success(), "ssh into the guest: {}", done.describe());
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(
        &lines[..4],
        ["running", "systemd", "rig-test", "trixie"],
        "{}",
        done.stdout
    );
    assert!(
        !done.stdout.contains("has-"),
        "not a fresh template: {}",
        done.stdout
    );
    assert_eq!(
        lines[4], "0",
        "package lists in a fresh guest: {}",
        done.stdout
    );

    // Another key is not let in.
    let other = work.path().join("other");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other),
    )
    .unwrap();
    assert!(!ssh(&other, addr, port, "true").success());

    // Its own host key and machine id, not the cached root filesystem's.
    let (host_key, machine_id) = rig
        .with_guest(42, |g| {
            Ok((
                g.exec_ok("cat /etc/ssh/ssh_host_ed25519_key.pub")?,
                g.exec_ok("cat /etc/machine-id")?,
            ))
        })
        .unwrap();
    assert!(host_key.starts_with("ssh-ed25519 "), "{host_key}");
    assert_eq!(machine_id.trim().len(), 32, "{machine_id}");
    let lower = rootfs(Release::Debian13, false).unwrap();
    assert!(!lower.join("etc/ssh/ssh_host_ed25519_key.pub").exists());
    assert!(
        !lower.join("root/marker").exists(),
        "the cached root filesystem changed"
    );

    // A power cycle keeps the guest's files and keys.
    rig.with_guest(42, |g| {
        g.poweroff()?;
        assert!(!g.running());
        g.boot()
    })
    .unwrap();
    let done = ssh(
        &key,
        addr,
        port,
        "cat /root/marker /etc/ssh/ssh_host_ed25519_key.pub",
    );
    assert!(done.success(), "{}", done.describe());
    assert!(done.stdout.contains(&marker), "{}", done.stdout);
    assert!(done.stdout.contains(host_key.trim()), "{}", done.stdout);

    // Deleted: powered off, its overlay unmounted, its folder gone.
    let deleted = ask(&rig.socket(), json!({"op": "delete", "vmid": 42}));
    assert_eq!(deleted["found"], true, "{deleted}");
    assert!(!rig.has(42));
    assert!(!dir.exists(), "{} is still there", dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&dir.display().to_string()),
        "still mounted"
    );
    assert!(
        !ssh(&key, addr, port, "true").success(),
        "the guest still answers"
    );
    let again = ask(&rig.socket(), json!({"op": "delete", "vmid": 42}));
    assert_eq!(again["found"], false, "{again}");
}
