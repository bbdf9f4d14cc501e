//! Domains with HTTPS through Caddy, through the built binary (issue 14): this machine is the
//! guest (`--host`, the sshd test host on a loopback address), Caddy is Debian's package. A
//! Flask app deployed with `--domain NAME --tls internal` answers HTTPS for that name through
//! Caddy (curl with `--resolve` and Caddy's local root CA), HTTP redirects to HTTPS, the
//! names that do not resolve are preflight warnings with the DNS record to create;
//! `domains ID add/remove` changes what Caddy serves; a second app on the same host with
//! `--tls off` (and `--expose-port`) answers plain HTTP; a third with the default `--tls acme` answers HTTPS with
//! the certificate of Caddy's local CA, its fallback while the ACME CA cannot issue one (no
//! way out to Let's Encrypt here), and its log says so. A Django app answers through its
//! domain, and through one added later (its ALLOWED_HOSTS follow). Seen from another network (a
//! namespace of the test's, joined by a veth pair), the guarded app's port is closed while
//! Caddy's HTTPS answers, and the app with `--expose-port` answers on its own port.
//!
//! On a fresh Debian 13 guest booted with systemd (the real-guest rig, through the whole
//! pipeline with fakepve): Caddy installed from the guest's apt, its service and the port
//! guard's unit enabled, HTTPS for the name, and both back after the guest is powered off and
//! booted again. Everything is one test, in order: Caddy binds ports 80 and
//! 443 of this machine (the real guests share its network), so the tests here hold
//! `CADDY_PORTS` while they run. At the end the apps are
//! destroyed (their sites and port guards go with them) and the Caddy this test started is
//! stopped.

use crate::support::git::GitServer;
use crate::support::net::{free_port_any, loopback, random_hex};
use crate::support::parts::{Part, skip_without};
use crate::support::process::{Finished, run_with_timeout};
use crate::support::proxdeck::{AppGuard, Proxdeck, write_private};
use crate::support::sshd::SshHost;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);
const QUICK: Duration = Duration::from_secs(60);
const LOCAL_ROOT: &str = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt";
const PIDFILE: &str = "/run/proxdeck-caddy.pid";

/// Held by each test here while it runs: one Caddy at a time on this machine's 80 and 443.
static CADDY_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn json_of(done: &Finished, what: &str) -> Value {
    serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{}", done.describe()))
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// What curl saw: its exit status, the HTTP status, the Location header and the body.
struct Curl {
    ok: bool,
    status: u16,
    location: String,
    body: String,
    stderr: String,
}

/// `curl` of `url` with the name sent to `ip` (`--resolve`), trusting only `cacert` (when
/// given); no proxy, bounded.
fn curl(url: &str, name: &str, port: u16, ip: &str, cacert: Option<&Path>) -> Curl {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "--max-time", "10"])
        .arg("--resolve")
        .arg(format!("{name}:{port}:{ip}"))
        .args(["-o", "-", "-w", "\n%{http_code} %{redirect_url}"]);
    if let Some(ca) = cacert {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.arg(url);
    finish_curl(run_with_timeout(&mut cmd, Duration::from_secs(30)).expect("curl runs"))
}

fn finish_curl(done: Finished) -> Curl {
    let (body, last) = done
        .stdout
        .rsplit_once('\n')
        .map(|(b, l)| (b.to_string(), l.to_string()))
        .unwrap_or_default();
    let (code, location) = last.split_once(' ').unwrap_or((&last, ""));
    Curl {
        ok: done.success(),
        status: code.trim().parse().unwrap_or(0),
        location: location.trim().to_string(),
        body,
        stderr: done.stderr.clone(),
    }
}

/// Polls `look` every half second until it returns `Some`, for at most `within`.
fn wait_for<T>(what: &str, within: Duration, mut look: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match look() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > within => {
                panic!("{what}: not within {} s; last: {last}", within.as_secs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// At the end (even a failing one): the Caddy proxdeck started here is stopped, and sites
/// the test's apps may have left are removed.
struct CaddyGuard {
    apps: Vec<String>,
}

impl Drop for CaddyGuard {
    fn drop(&mut self) {
        for app in &self.apps {
            let _ = std::fs::remove_file(format!("/etc/caddy/proxdeck/{app}.caddy"));
            let table = format!("proxdeck_{}", app.replace('-', "_"));
            let _ = Command::new("nft")
                .args(["delete", "table", "inet", &table])
                .stderr(std::process::Stdio::null())
                .status();
        }
        if let Some(pid) = std::fs::read_to_string(PIDFILE)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = std::fs::remove_file(PIDFILE);
        }
    }
}

/// A network namespace joined to this machine by a veth pair: what it sends to
/// `host_ip` arrives on the veth, not the loopback, as from another machine. Removed on drop.
struct Outside {
    ns: String,
    host_ip: String,
}

impl Outside {
    fn new(tag: &str) -> Outside {
        let ns = format!("pd{tag}");
        let (host_if, ns_if) = (format!("pdh{tag}"), format!("pdn{tag}"));
        let third = crate::support::net::random_u64() % 250 + 1;
        let (host_ip, ns_ip) = (format!("10.213.{third}.1"), format!("10.213.{third}.2"));
        let outside = Outside {
            ns: ns.clone(),
            host_ip: host_ip.clone(),
        };
        for args in [
            vec!["netns", "add", &ns],
            vec![
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ],
            vec!["link", "set", &ns_if, "netns", &ns],
            vec!["addr", "add", &format!("{host_ip}/30"), "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec![
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ns_ip}/30"),
                "dev",
                &ns_if,
            ],
            vec!["-n", &ns, "link", "set", &ns_if, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
        ] {
            let done = run_with_timeout(Command::new("ip").args(&args), Duration::from_secs(30))
                .expect("ip runs");
            assert!(done.success(), "ip {args:?}: {}", done.describe());
        }
        outside
    }

    /// curl from the namespace (see [`curl`]).
    fn curl(&self, url: &str, name: &str, port: u16, cacert: Option<&Path>) -> Curl {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "curl", "-sS", "--noproxy", "*"])
            .args(["--max-time", "5", "--resolve"])
            .arg(format!("{name}:{port}:{}", self.host_ip))
            .args(["-o", "-", "-w", "\n%{http_code} %{redirect_url}"]);
        if let Some(ca) = cacert {
            cmd.arg("--cacert").arg(ca);
        }
        cmd.arg(url);
        finish_curl(run_with_timeout(&mut cmd, Duration::from_secs(30)).expect("curl runs"))
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn domains_through_caddy_https_redirect_add_remove_and_plain_http() {
    if skip_without(
        "domains_through_caddy_https_redirect_add_remove_and_plain_http",
        &[Part::Sshd, Part::Git, Part::GuestPython, Part::Caddy],
    ) || crate::support::samples::skip_without_tools(
        "domains_through_caddy_https_redirect_add_remove_and_plain_http",
        &[crate::support::samples::Tool::Django],
    ) {
        return;
    }
    let _ports = CADDY_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::Builder::new()
        .prefix("proxdeck-domains-")
        .tempdir()
        .unwrap();
    let root = work.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = root.join("data");
    let app_root = root.join("apps");
    let tag = random_hex(6);
    let (name, plain, acme) = (
        format!("dom-{tag}"),
        format!("domoff-{tag}"),
        format!("domacme-{tag}"),
    );
    let (domain, second, off_domain, acme_domain) = (
        format!("app-{tag}.test"),
        format!("www-{tag}.test"),
        format!("plain-{tag}.test"),
        format!("acme-{tag}.test"),
    );
    let django = format!("domdj-{tag}");
    let (dj_domain, dj_second) = (format!("dj-{tag}.test"), format!("dj2-{tag}.test"));
    let _caddy = CaddyGuard {
        apps: vec![name.clone(), plain.clone(), acme.clone(), django.clone()],
    };
    let _apps = [
        AppGuard::new(app_root.join(&name).join("run/app.pid")),
        AppGuard::new(app_root.join(&plain).join("run/app.pid")),
        AppGuard::new(app_root.join(&acme).join("run/app.pid")),
        AppGuard::new(app_root.join(&django).join("run/app.pid")),
    ];
    let ssh = SshHost::start(loopback(), &data_dir.join("keys/id_ed25519.pub")).expect("sshd");
    let ip = ssh.addr().to_string();
    let git = GitServer::start(loopback()).expect("git daemon");
    let sample = git.add_flask_app("domains-sample").unwrap();
    let config = root.join("config.toml");
    write_private(
        &config,
        &format!(
            "[guest]\nssh_user = \"root\"\napp_root = \"{}\"\n\n\
             [timeouts]\nssh_secs = 60\nhealth_secs = 120\nprovision_secs = 900\n\n\
             [jobs]\nidle_exit_secs = 1\n",
            app_root.display()
        ),
    )
    .unwrap();
    let proxdeck = Proxdeck::new(config, data_dir.clone(), root);
    let logs = |who: &str| {
        proxdeck
            .run(&["logs", who], QUICK)
            .map(|d| d.stdout)
            .unwrap_or_default()
    };
    let must = |args: &[&str], timeout: Duration| -> Finished {
        let done = proxdeck
            .run(args, timeout)
            .unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
        assert!(
            done.success(),
            "{args:?} failed: {}\n--- logs ---\n{}\n--- caddy ---\n{}",
            done.describe(),
            logs(args.get(1).copied().unwrap_or_default()),
            std::fs::read_to_string("/var/log/proxdeck-caddy.log").unwrap_or_default()
        );
        done
    };
    let host = format!("{ip}:{}", ssh.port());
    let port = free_port_any().unwrap().to_string();

    // 1. Deploy with a domain and Caddy's local CA.
    let deployed = must(
        &[
            "deploy",
            "--repo",
            &sample.git_url,
            "--framework",
            "flask",
            "--host",
            &host,
            "--name",
            &name,
            "--port",
            &port,
            "--domain",
            &domain,
            "--tls",
            "internal",
            "--json",
        ],
        DEPLOY_TIMEOUT,
    );
    let dep = json_of(&deployed, "deploy --json");
    assert_eq!(text(&dep["status"]), "RUNNING", "{dep}");
    assert_eq!(text(&dep["url"]), format!("https://{domain}/"), "{dep}");
    let log = logs(&name);
    // The name does not resolve here (no DNS for .test): a warning with the record, no error.
    assert!(
        log.contains(&format!("warning: domain {domain} does not resolve"))
            && log.contains(&format!("`{domain}. A {ip}`")),
        "{log}"
    );
    assert!(log.contains("checking through Caddy"), "{log}");
    let cacert = Path::new(LOCAL_ROOT);
    assert!(
        cacert.exists(),
        "Caddy's local root CA is not at {LOCAL_ROOT}"
    );
    let main = std::fs::read_to_string("/etc/caddy/Caddyfile").unwrap_or_default();
    assert!(
        main.lines()
            .any(|l| l == "import /etc/caddy/proxdeck/*.caddy"),
        "{main}"
    );

    // 2. HTTPS for that name, verified against Caddy's root; the body is the app's.
    let https = curl(
        &format!("https://{domain}/"),
        &domain,
        443,
        &ip,
        Some(cacert),
    );
    assert!(
        https.ok && https.status == 200,
        "HTTPS: {} {}",
        https.status,
        https.stderr
    );
    assert!(https.body.contains(&sample.body), "{}", https.body);
    // Without Caddy's root, the certificate is not trusted: it really is HTTPS.
    let untrusted = curl(&format!("https://{domain}/"), &domain, 443, &ip, None);
    assert!(
        !untrusted.ok,
        "an unknown CA was trusted: {}",
        untrusted.body
    );

    // 3. HTTP redirects to HTTPS.
    let http = curl(&format!("http://{domain}/"), &domain, 80, &ip, None);
    assert!(
        matches!(http.status, 301 | 308) && http.location == format!("https://{domain}/"),
        "HTTP: {} to {:?} {}",
        http.status,
        http.location,
        http.stderr
    );

    // 4. The app's port is guarded where nftables can load rules; the log says which.
    let guarded = Command::new("nft")
        .args([
            "list",
            "table",
            "inet",
            &format!("proxdeck_{}", name.replace('-', "_")),
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        guarded || log.contains("nftables cannot load rules on this guest"),
        "neither a guard table nor the warning: {log}"
    );
    eprintln!("the app's port guarded by nftables here: {guarded}");
    // From another network (a namespace of the test's own, through a veth pair): the app's
    // port is closed, Caddy's HTTPS answers.
    let outside = guarded.then(|| Outside::new(&tag));
    if let Some(o) = &outside {
        let https = o.curl(&format!("https://{domain}/"), &domain, 443, Some(cacert));
        assert!(
            https.ok && https.body.contains(&sample.body),
            "HTTPS from outside: {} {}",
            https.status,
            https.stderr
        );
        let direct = o.curl(
            &format!("http://{domain}:{port}/"),
            &domain,
            port.parse().unwrap(),
            None,
        );
        assert!(
            !direct.ok,
            "the app's own port answers from outside: {} {}",
            direct.status, direct.body
        );
    }

    // 5. `domains` lists it; `add` serves a second name, `remove` stops serving the first.
    let listed = json_of(
        &must(&["domains", &name, "--json"], QUICK),
        "domains --json",
    );
    assert_eq!(listed["domains"], serde_json::json!([domain]), "{listed}");
    assert_eq!(text(&listed["tls"]), "internal");
    must(&["domains", &name, "add", &second], DEPLOY_TIMEOUT);
    let both = curl(
        &format!("https://{second}/"),
        &second,
        443,
        &ip,
        Some(cacert),
    );
    assert!(
        both.ok && both.body.contains(&sample.body),
        "{} {}",
        both.status,
        both.stderr
    );
    must(&["domains", &name, "remove", &domain], DEPLOY_TIMEOUT);
    let shown = json_of(&must(&["show", &name, "--json"], QUICK), "show --json");
    assert_eq!(
        shown["overrides"]["domains"],
        serde_json::json!([second]),
        "{shown}"
    );
    assert_eq!(text(&shown["url"]), format!("https://{second}/"), "{shown}");
    wait_for("the removed name no longer served", QUICK, || {
        let gone = curl(
            &format!("https://{domain}/"),
            &domain,
            443,
            &ip,
            Some(cacert),
        );
        if gone.ok {
            Err(format!("HTTP {}", gone.status))
        } else {
            Ok(())
        }
    });
    let still = curl(
        &format!("https://{second}/"),
        &second,
        443,
        &ip,
        Some(cacert),
    );
    assert!(
        still.ok && still.status == 200,
        "{} {}",
        still.status,
        still.stderr
    );
    // A name it does not have, and a bad one, are refused with the reason.
    let refused = proxdeck
        .run(&["domains", &name, "remove", &domain], QUICK)
        .unwrap();
    assert!(!refused.success());
    assert!(
        refused.stderr.contains("is not one of its domains"),
        "{}",
        refused.describe()
    );
    let bad = proxdeck
        .run(&["domains", &name, "add", "https://x.test"], QUICK)
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", bad.describe());
    assert!(bad.stderr.contains("domain:"), "{}", bad.describe());

    // 5b. Django checks the Host against ALLOWED_HOSTS: the domains are in it, and a domain
    // added later too (the job restarts it with the new ones).
    let samples_dir = root.join("samples");
    std::fs::create_dir_all(&samples_dir).unwrap();
    let dj = crate::support::samples::django(&git, "domains-django", &samples_dir).unwrap();
    let dj_port = free_port_any().unwrap().to_string();
    must(
        &[
            "deploy",
            "--repo",
            &dj.git_url,
            "--framework",
            "django",
            "--host",
            &host,
            "--name",
            &django,
            "--port",
            &dj_port,
            "--domain",
            &dj_domain,
            "--tls",
            "internal",
        ],
        DEPLOY_TIMEOUT,
    );
    let page = curl(
        &format!("https://{dj_domain}/"),
        &dj_domain,
        443,
        &ip,
        Some(cacert),
    );
    assert!(
        page.status == 200 && page.body.contains(&dj.body),
        "Django through its domain: {} {}",
        page.status,
        page.body
    );
    let added = must(&["domains", &django, "add", &dj_second], DEPLOY_TIMEOUT);
    assert!(
        added
            .stdout
            .contains("django: ALLOWED_HOSTS and CSRF origins with the domains"),
        "{}",
        added.describe()
    );
    let page = curl(
        &format!("https://{dj_second}/"),
        &dj_second,
        443,
        &ip,
        Some(cacert),
    );
    assert!(
        page.status == 200 && page.body.contains(&dj.body),
        "Django through the added domain: {} {}",
        page.status,
        page.body
    );

    // 6. A second app on the same host, plain HTTP: its own site next to the first one's.
    let port2 = free_port_any().unwrap().to_string();
    let deployed = must(
        &[
            "deploy",
            "--repo",
            &sample.git_url,
            "--framework",
            "flask",
            "--host",
            &host,
            "--name",
            &plain,
            "--port",
            &port2,
            "--domain",
            &off_domain,
            "--tls",
            "off",
            "--expose-port",
            "--json",
        ],
        DEPLOY_TIMEOUT,
    );
    let dep = json_of(&deployed, "deploy --json");
    assert_eq!(text(&dep["url"]), format!("http://{off_domain}/"), "{dep}");
    let http = curl(&format!("http://{off_domain}/"), &off_domain, 80, &ip, None);
    assert!(
        http.ok && http.status == 200 && http.body.contains(&sample.body),
        "plain HTTP: {} {}",
        http.status,
        http.stderr
    );
    let first_still = curl(
        &format!("https://{second}/"),
        &second,
        443,
        &ip,
        Some(cacert),
    );
    assert!(first_still.ok, "{}", first_still.stderr);
    // --expose-port: no guard, its own port answers from outside too.
    let table = format!("proxdeck_{}", plain.replace('-', "_"));
    let listed = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(!listed, "--expose-port, yet {table} guards the port");
    if let Some(o) = &outside {
        let direct = o.curl(
            &format!("http://{off_domain}:{port2}/"),
            &off_domain,
            port2.parse().unwrap(),
            None,
        );
        assert!(
            direct.ok && direct.body.contains(&sample.body),
            "--expose-port: {} {}",
            direct.status,
            direct.stderr
        );
    }

    // 7. A third app with the default TLS mode: no way out to an ACME CA here, so Caddy's
    // local CA signs its certificate meanwhile, and the log says so.
    let port3 = free_port_any().unwrap().to_string();
    let deployed = must(
        &[
            "deploy",
            "--repo",
            &sample.git_url,
            "--framework",
            "flask",
            "--host",
            &host,
            "--name",
            &acme,
            "--port",
            &port3,
            "--domain",
            &acme_domain,
            "--json",
        ],
        DEPLOY_TIMEOUT,
    );
    let dep = json_of(&deployed, "deploy --json");
    assert_eq!(
        text(&dep["url"]),
        format!("https://{acme_domain}/"),
        "{dep}"
    );
    let https = curl(
        &format!("https://{acme_domain}/"),
        &acme_domain,
        443,
        &ip,
        Some(cacert),
    );
    assert!(
        https.ok && https.body.contains(&sample.body),
        "acme: {} {}",
        https.status,
        https.stderr
    );
    let log = logs(&acme);
    assert!(log.contains("signed by Caddy's local CA for now"), "{log}");
    let http = curl(
        &format!("http://{acme_domain}/"),
        &acme_domain,
        80,
        &ip,
        None,
    );
    assert!(
        matches!(http.status, 301 | 308),
        "{} {}",
        http.status,
        http.stderr
    );

    // 8. Destroy removes each app's sites.
    for app in [&name, &plain, &acme, &django] {
        must(&["destroy", app, "--yes"], DEPLOY_TIMEOUT);
        assert!(
            !Path::new(&format!("/etc/caddy/proxdeck/{app}.caddy")).exists(),
            "{app}'s Caddy sites are left"
        );
    }
}

#[test]
fn caddy_under_systemd_on_a_fresh_debian_13_guest_survives_a_reboot() {
    use crate::support::cluster::Cluster;
    use crate::support::guests::{Release, rootfs, skip_without_rig};
    use crate::support::samples;
    let test = "caddy_under_systemd_on_a_fresh_debian_13_guest_survives_a_reboot";
    if skip_without(
        test,
        &[
            Part::Fakepve,
            Part::Terraform,
            Part::Git,
            Part::Sshd,
            Part::Caddy,
        ],
    ) || skip_without_rig(test)
    {
        return;
    }
    rootfs(Release::Debian13, false).unwrap_or_else(|e| panic!("{test}: root filesystem: {e:#}"));
    let _ports = CADDY_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let c = Cluster::start("proxdeck-caddy13-", 4, false).expect("start the cluster");
    let dir = c.root.join("samples");
    std::fs::create_dir_all(&dir).unwrap();
    let sample = samples::flask(&c.git, "flaskcaddy", &dir).unwrap();
    let tag = random_hex(6);
    let (name, domain) = ("fc13".to_string(), format!("fc13-{tag}.test"));
    let port = free_port_any().unwrap().to_string();
    let done = c.run(
        &[
            "deploy",
            "--repo",
            &sample.git_url,
            "--framework",
            "flask",
            "--name",
            &name,
            "--port",
            &port,
            "--domain",
            &domain,
            "--tls",
            "internal",
            "--json",
        ],
        Duration::from_secs(1800),
    );
    assert!(done.success(), "deploy: {}", c.explain(&name, &done));
    let d = json_of(&done, "deploy --json");
    assert_eq!(text(&d["url"]), format!("https://{domain}/"), "{d}");
    let vmid = d["vmid"].as_u64().expect("a vmid");
    let ip = text(&d["ip"]);
    let guest = |script: &str| {
        c.rig
            .with_guest(vmid, |g| g.exec_ok(script))
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    // Where nftables cannot load rules (this rig's guests share the machine's network
    // without its CAP_NET_ADMIN) the log says so and the port stays open: no guard unit.
    let log = c
        .proxdeck
        .run(&["logs", &name], QUICK)
        .map(|l| l.stdout)
        .unwrap_or_default();
    let guarded = !log.contains("nftables cannot load rules on this guest");
    eprintln!("the app's port guarded by nftables on the guest: {guarded}");
    let units = |what: &str| {
        let mut script = "systemctl is-active caddy; systemctl is-enabled caddy".to_string();
        let mut want = vec!["active", "enabled"];
        if guarded {
            script.push_str(&format!(
                "; systemctl is-active proxdeck-guard-{name}; systemctl is-enabled proxdeck-guard-{name}"
            ));
            want.extend(["active", "enabled"]);
        }
        let out = guest(&format!("{{ {script}; }} 2>&1 || true"));
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            want,
            "{what}: {out}\n--- log ---\n{log}"
        );
    };
    units("after the deploy");
    let cacert = c.root.join("guest-root.crt");
    std::fs::write(&cacert, guest(&format!("cat {LOCAL_ROOT}"))).unwrap();
    let answers = |what: &str| {
        wait_for(what, Duration::from_secs(120), || {
            let https = curl(
                &format!("https://{domain}/"),
                &domain,
                443,
                &ip,
                Some(&cacert),
            );
            if https.ok && https.body.contains(&sample.body) {
                Ok(())
            } else {
                Err(format!("HTTP {} {}", https.status, https.stderr))
            }
        });
        let http = curl(&format!("http://{domain}/"), &domain, 80, &ip, None);
        assert!(
            matches!(http.status, 301 | 308) && http.location == format!("https://{domain}/"),
            "{what}: HTTP {} to {:?}",
            http.status,
            http.location
        );
    };
    answers("HTTPS through Caddy on the guest");

    // Powered off and booted again: Caddy and the port's guard come back with the guest.
    c.rig
        .with_guest(vmid, |g| {
            g.poweroff()?;
            g.boot()
        })
        .unwrap_or_else(|e| panic!("power cycle: {e:#}"));
    answers("HTTPS after a reboot");
    units("after a reboot");

    let done = c.run(
        &["destroy", &name, "--yes", "--json"],
        Duration::from_secs(600),
    );
    assert!(done.success(), "destroy: {}", c.explain(&name, &done));
}
