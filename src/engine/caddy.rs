//! Domains with HTTPS through Caddy on the guest: what the engine does around the Caddy part
//! of the provisioning scripts (`assets/provision/caddy.sh.hbs`).
//!
//! - [`dns_warnings`]: preflight's look at the deployment's domains: each one should resolve
//!   to the guest's address; when it does not, a warning with the DNS record to create (DNS
//!   may be set up later, so it is never an error). Every lookup is bounded in time.
//! - [`local_root`]: Caddy's local CA certificate, read from the guest over SSH, so the health
//!   check can verify a certificate Caddy signed itself (`--tls internal`, and `acme` until
//!   the ACME CA has issued one).
//! - [`Front`]: how the health check reaches the app through Caddy: the domain's URL, with the
//!   name resolved to the guest's address (SNI and Host are the domain's) and the roots to
//!   trust.
//! - [`run_domains`]: the `domains` job: a domain added or removed, Caddy's config written
//!   again and reloaded on the guest, the app checked through its (new) first domain, then the
//!   deployment's domains and URL recorded.
//!
//! Must not: write shell (that is the recipe's), or decide what may be done to a deployment
//! (that is `domain::policy`).

use super::Engine;
use super::guest;
use super::health;
use super::provision::{self, ScriptVars};
use super::report::Reporter;
use super::ssh::{self, SshError, Target};
use crate::domain::{Deployment, DomainChange, Framework, TlsMode, domains, present};
use crate::protocol::LogStream;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where Debian's Caddy service keeps its local CA's root certificate (its HOME is
/// /var/lib/caddy; proxdeck runs Caddy with the same HOME where there is no service manager).
pub const LOCAL_ROOT: &str = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt";

/// How long one DNS lookup may take.
const LOOKUP_LIMIT: Duration = Duration::from_secs(5);

/// The addresses `name` resolves to, or why it does not (bounded by [`LOOKUP_LIMIT`]).
async fn lookup(name: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    match tokio::time::timeout(LOOKUP_LIMIT, tokio::net::lookup_host((name, 0))).await {
        Err(_) => Err(format!(
            "the lookup took longer than {} s",
            LOOKUP_LIMIT.as_secs()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => {
            let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            ips.sort();
            ips.dedup();
            Ok(ips)
        }
    }
}

/// The DNS record that points `domain` at `ip`, as a zone file line.
pub fn dns_record(domain: &str, ip: IpAddr) -> String {
    let kind = if ip.is_ipv6() { "AAAA" } else { "A" };
    format!("{domain}. {kind} {ip}")
}

/// What preflight says about `domain` given what it resolves to and the guest's addresses;
/// `None` when it points at the guest.
pub fn dns_verdict(
    domain: &str,
    resolved: &Result<Vec<IpAddr>, String>,
    guest: &[IpAddr],
    guest_label: &str,
) -> Option<String> {
    let records = if guest.is_empty() {
        format!("an A (or AAAA) record of {domain} with {guest_label}'s address")
    } else {
        guest
            .iter()
            .map(|ip| format!("`{}`", dns_record(domain, *ip)))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match resolved {
        Ok(ips) if ips.iter().any(|ip| guest.contains(ip)) => None,
        Ok(ips) if !ips.is_empty() => Some(format!(
            "domain {domain} resolves to {}, not to the guest ({guest_label}): point it at the guest with {records} (or at the router that forwards ports 80 and 443 to it); until then browsers reach something else, and no ACME certificate can be issued for it",
            ips.iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Ok(_) => Some(format!(
            "domain {domain} resolves to no address: create the DNS record {records}; the deployment goes on, and Caddy serves the name once DNS points at the guest"
        )),
        Err(why) => Some(format!(
            "domain {domain} does not resolve ({why}): create the DNS record {records}; the deployment goes on, and Caddy serves the name once DNS points at the guest"
        )),
    }
}

/// Preflight's warnings about the deployment's domains: one per domain that does not resolve
/// to the guest's `address` (an IP address or a host name). Lookups run at once, each
/// bounded in time.
pub async fn dns_warnings(domains: &[String], address: &str) -> Vec<String> {
    let guest = lookup(address).await.unwrap_or_default();
    let mut set = tokio::task::JoinSet::new();
    for (i, d) in domains.iter().enumerate() {
        let d = d.clone();
        set.spawn(async move {
            let r = lookup(&d).await;
            (i, d, r)
        });
    }
    let mut found = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok(one) = done {
            found.push(one);
        }
    }
    found.sort_by_key(|(i, _, _)| *i);
    found
        .into_iter()
        .filter_map(|(_, d, r)| dns_verdict(&d, &r, &guest, address))
        .collect()
}

/// Logs preflight's DNS warnings for `d`'s domains (nothing when it has none).
pub async fn warn_dns(
    reporter: &Reporter,
    d: &Deployment,
    address: &str,
) -> Result<(), crate::store::StoreError> {
    if d.overrides.domains.is_empty() {
        return Ok(());
    }
    let warnings = dns_warnings(&d.overrides.domains, address).await;
    if warnings.is_empty() {
        return reporter
            .info(format!(
                "DNS: {} resolve to the guest ({address})",
                d.overrides.domains.join(", ")
            ))
            .await;
    }
    reporter
        .lines(
            LogStream::Stderr,
            warnings
                .into_iter()
                .map(|w| format!("warning: {w}"))
                .collect(),
        )
        .await
}

/// Caddy's local root certificate (PEM) from the guest, or why it cannot be read. Blocks.
pub fn local_root(session: &ssh2::Session, target: &Target) -> Result<String, String> {
    let mut pem = String::new();
    let mut errors = Vec::new();
    let mut collect = |stream: LogStream, lines: Vec<String>| match stream {
        LogStream::Stdout => {
            for l in lines {
                pem.push_str(&l);
                pem.push('\n');
            }
        }
        _ => errors.extend(lines),
    };
    let command = format!("cat {LOCAL_ROOT}");
    let command = if guest::needs_sudo(target) {
        format!("sudo -n {command}")
    } else {
        command
    };
    let rc = ssh::exec(
        session,
        target,
        &command,
        None,
        Duration::from_secs(30),
        &mut collect,
    )
    .map_err(|e: SshError| e.to_string())?;
    if rc != 0 || !pem.contains("BEGIN CERTIFICATE") {
        return Err(format!(
            "{LOCAL_ROOT} cannot be read (status {rc}{})",
            if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join(" "))
            }
        ));
    }
    Ok(pem)
}

/// How the health check reaches the app through Caddy.
#[derive(Debug, Clone)]
pub struct Front {
    /// The domain checked (the deployment's first).
    pub domain: String,
    pub tls: TlsMode,
    /// Where the domain is sent instead of asking DNS: the guest, on 443 (or 80 with TLS off).
    pub addr: SocketAddr,
    /// Caddy's local root certificate (PEM), trusted besides (acme) or instead of (internal)
    /// the public roots.
    pub local_root: Option<String>,
}

impl Front {
    /// The front of `d` (its first domain) on the guest at `address`; `None` without domains.
    pub async fn of(d: &Deployment, address: &str) -> Result<Option<Front>, String> {
        let Some(domain) = d.overrides.domains.first() else {
            return Ok(None);
        };
        let tls = d.overrides.tls_mode();
        let ip = *lookup(address)
            .await
            .map_err(|e| format!("the guest's address {address} does not resolve: {e}"))?
            .first()
            .ok_or_else(|| format!("the guest's address {address} resolves to nothing"))?;
        let port = if tls == TlsMode::Off { 80 } else { 443 };
        Ok(Some(Front {
            domain: domain.clone(),
            tls,
            addr: SocketAddr::new(ip, port),
            local_root: None,
        }))
    }

    /// The app's URL: `https://domain/` (`http://` with TLS off).
    pub fn url(&self) -> String {
        format!("{}://{}/", self.tls.scheme(), self.domain)
    }

    /// An HTTP client for the health check: the domain resolved to the guest; with
    /// `internal`, only Caddy's local root trusted; with `acme`, the public roots and Caddy's
    /// local root (its fallback signer until the ACME CA has issued a certificate).
    pub fn client(&self) -> Result<reqwest::Client, String> {
        let mut b = health::client_builder().resolve(&self.domain, self.addr);
        if self.tls != TlsMode::Off {
            if self.tls == TlsMode::Internal {
                b = b.tls_built_in_root_certs(false);
            }
            if let Some(pem) = &self.local_root {
                let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| format!("Caddy's local root certificate does not parse: {e}"))?;
                b = b.add_root_certificate(cert);
            }
        }
        b.build().map_err(|e| e.to_string())
    }

    /// With `acme`: whether the domain's certificate is one a public CA issued (`false`:
    /// Caddy's local CA signed it, the ACME CA has not issued one yet).
    pub async fn publicly_trusted(&self) -> bool {
        let Ok(client) = health::client_builder()
            .resolve(&self.domain, self.addr)
            .build()
        else {
            return false;
        };
        client.get(self.url()).send().await.is_ok()
    }
}

/// Renders the script that writes the app's Caddy sites (and the guard of its port) for `d`
/// and reloads Caddy: the recipe's Caddy part alone.
pub fn render_domains_script(
    engine: &Engine,
    d: &Deployment,
    framework: &Framework,
    address: &str,
) -> Result<String, String> {
    let vars = ScriptVars::new(
        d,
        framework,
        &[],
        &engine.config.guest.app_root,
        address,
        &d.git_ref,
    );
    provision::render_domains(&vars).map_err(|e| e.to_string())
}

/// Why the `domains` job failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainsError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

/// The `domains` job (policy has allowed it): `change` of `name`, Caddy updated on the guest
/// and reloaded, the app checked through the first domain left (or its own port when none is
/// left), then the deployment's domains and URL recorded. On failure the record keeps its
/// domains, and Caddy gets the config of those back. A deployment that is not RUNNING (no app
/// to check) gets the change recorded only; its next retry or redeploy applies it.
pub async fn run_domains(
    engine: &Engine,
    reporter: &Reporter,
    d: Deployment,
    change: DomainChange,
    name: &str,
) -> Result<String, DomainsError> {
    let who = present::who(&d);
    let name = domains::normalize_domain(name)
        .map_err(|m| DomainsError::Invalid(format!("domain: {m}")))?;
    let next = domains::apply_change(&d.overrides.domains, change, &name)
        .map_err(|m| DomainsError::Invalid(format!("{who}: {m}")))?;
    let framework = crate::domain::Catalog::builtin()
        .get(&d.framework)
        .cloned()
        .ok_or_else(|| {
            DomainsError::Failed(format!(
                "framework {:?} is no longer in the catalog",
                d.framework
            ))
        })?;
    let address =
        d.ip.clone()
            .ok_or_else(|| DomainsError::Failed(format!("{who} has no guest address")))?;
    let mut updated = d.clone();
    updated.overrides.domains = next.clone();
    let log = |e: crate::store::StoreError| DomainsError::Failed(e.to_string());
    if d.status != crate::domain::Status::Running {
        // Nothing answers to check through Caddy: the change is recorded, and the next retry
        // or redeploy sets Caddy up with it.
        let (id, overrides) = (d.id.clone(), updated.overrides.clone());
        engine
            .db
            .call(move |s| s.set_overrides(&id, &overrides))
            .await
            .map_err(log)?;
        return Ok(format!(
            "{who} is {}: {} {name} is recorded, and Caddy serves it from the next `proxdeck {} {}`",
            d.status,
            if change == DomainChange::Add {
                "the domain"
            } else {
                "the removal of"
            },
            if d.status == crate::domain::Status::Failed {
                "retry"
            } else {
                "redeploy"
            },
            d.id
        ));
    }
    reporter
        .info(format!(
            "{} {name}: Caddy on {address} will serve {}",
            change.as_str(),
            if next.is_empty() {
                "no domain of this app (its own port is open again)".to_string()
            } else {
                next.join(", ")
            }
        ))
        .await
        .map_err(log)?;
    if change == DomainChange::Add {
        let warnings = dns_warnings(std::slice::from_ref(&name), &address).await;
        if !warnings.is_empty() {
            reporter
                .lines(
                    LogStream::Stderr,
                    warnings
                        .into_iter()
                        .map(|w| format!("warning: {w}"))
                        .collect(),
                )
                .await
                .map_err(log)?;
        }
    }
    let script = render_domains_script(engine, &updated, &framework, &address)
        .map_err(DomainsError::Failed)?;
    let applied = apply(engine, reporter, &updated, &address, script).await;
    let checked = match applied {
        Ok(front) => check_app(engine, reporter, &updated, &address, front).await,
        Err(e) => Err(e),
    };
    if let Err(why) = checked {
        // Caddy goes back to the domains the record still has.
        if let Ok(script) = render_domains_script(engine, &d, &framework, &address) {
            let _ = reporter
                .info("putting Caddy's config for the previous domains back")
                .await;
            if let Err(e) = apply(engine, reporter, &d, &address, script).await {
                let _ = reporter
                    .lines(
                        LogStream::Stderr,
                        vec![format!("the previous config could not be put back: {e}")],
                    )
                    .await;
            }
        }
        return Err(DomainsError::Failed(format!(
            "{who}: {} {name} failed: {why}; its domains stay {}",
            change.as_str(),
            if d.overrides.domains.is_empty() {
                "none".to_string()
            } else {
                d.overrides.domains.join(", ")
            }
        )));
    }
    let url = match Front::of(&updated, &address).await {
        Ok(Some(front)) => front.url(),
        _ => format!("http://{}/", host_port(&address, d.port)),
    };
    let (id, overrides, url2) = (d.id.clone(), updated.overrides.clone(), url.clone());
    engine
        .db
        .call(move |s| {
            s.set_overrides(&id, &overrides)?;
            s.record_facts(
                &id,
                &crate::store::Facts {
                    url: Some(url2),
                    ..Default::default()
                },
            )
        })
        .await
        .map_err(log)?;
    Ok(format!(
        "{who}: {} {name}; it answers at {url}{}",
        if change == DomainChange::Add {
            "added"
        } else {
            "removed"
        },
        if next.len() > 1 {
            format!(" (domains: {})", next.join(", "))
        } else {
            String::new()
        }
    ))
}

/// `host:port`, IPv6 in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Runs the Caddy script on the guest; returns the front to check (with Caddy's local root
/// when the TLS mode needs it), `None` when the app has no domain left.
async fn apply(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    address: &str,
    script: String,
) -> Result<Option<Front>, String> {
    let guest = guest::resolve(engine, d, address)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, forward) = reporter.pipe();
    let session = guest::connect(engine, &guest, tx.clone()).await;
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            drop(tx);
            let _ = forward.await;
            return Err(e.to_string());
        }
    };
    let target = guest.target.clone();
    let needs_root = d.overrides.tls_mode() != TlsMode::Off && !d.overrides.domains.is_empty();
    let result = tokio::task::spawn_blocking(move || {
        let mut out = |stream: LogStream, lines: Vec<String>| {
            let _ = tx.send(super::process::Output { stream, lines });
        };
        let run = guest::run_script(
            &session,
            &target,
            &script,
            Duration::from_secs(600),
            &|| false,
            &mut out,
        );
        let root = needs_root.then(|| local_root(&session, &target));
        (run, root)
    })
    .await
    .map_err(|e| e.to_string());
    let _ = forward.await;
    let (run, root) = result?;
    let run = run.map_err(|e| e.to_string())?;
    if run.status != 0 {
        return Err(run
            .reason
            .unwrap_or_else(|| format!("the Caddy script exited with status {}", run.status)));
    }
    let Some(mut front) = Front::of(d, address).await? else {
        return Ok(None);
    };
    front.local_root = take_root(reporter, front.tls, root).await;
    Ok(Some(front))
}

/// The local root to trust, saying when it is missing.
pub async fn take_root(
    reporter: &Reporter,
    tls: TlsMode,
    root: Option<Result<String, String>>,
) -> Option<String> {
    match root {
        Some(Ok(pem)) => Some(pem),
        Some(Err(why)) => {
            let _ = reporter
                .info(format!(
                    "Caddy's local CA certificate is not there ({why}){}",
                    if tls == TlsMode::Internal {
                        "; the health check cannot verify the certificate and will say so"
                    } else {
                        ""
                    }
                ))
                .await;
            None
        }
        None => None,
    }
}

/// The front of `d` with Caddy's local root read from the guest over a fresh SSH session
/// (when its TLS mode needs it); `None` without domains. For checks that run without the
/// provisioning's session (`restore`).
pub async fn front_with_root(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    address: &str,
) -> Result<Option<Front>, String> {
    let Some(mut front) = Front::of(d, address).await? else {
        return Ok(None);
    };
    if front.tls == TlsMode::Off {
        return Ok(Some(front));
    }
    let guest = guest::resolve(engine, d, address)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, forward) = reporter.pipe();
    let session = guest::connect(engine, &guest, tx).await;
    let _ = forward.await;
    let root = match session {
        Ok(session) => {
            let target = guest.target.clone();
            tokio::task::spawn_blocking(move || local_root(&session, &target))
                .await
                .map_err(|e| e.to_string())?
        }
        Err(e) => Err(e.to_string()),
    };
    front.local_root = take_root(reporter, front.tls, Some(root)).await;
    Ok(Some(front))
}

/// The app's health check through `front` when there is one (its first domain, sent to the
/// guest), else on the app's own port: its health path answers (the status the deployment
/// expects, or any 2xx/3xx) within `timeouts.health`.
pub async fn check_app(
    engine: &Engine,
    reporter: &Reporter,
    d: &Deployment,
    address: &str,
    front: Option<Front>,
) -> Result<(), String> {
    let (path, expect) = health::check_for(d, crate::domain::Catalog::builtin().get(&d.framework));
    let within = engine.config.timeouts.health;
    let (url, client) = match &front {
        Some(f) => (
            format!("{}://{}{path}", f.tls.scheme(), f.domain),
            f.client()?,
        ),
        None => (
            format!("http://{}{path}", host_port(address, d.port)),
            health::client_builder()
                .build()
                .map_err(|e| e.to_string())?,
        ),
    };
    let healthy = health::wait_with(&client, &url, expect, within, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    let _ = reporter
        .info(format!(
            "{url} answered HTTP {} after {} attempt(s){}",
            healthy.status,
            healthy.attempts,
            front
                .as_ref()
                .map(|f| format!(" (through Caddy, the name sent to {})", f.addr))
                .unwrap_or_default()
        ))
        .await;
    if let Some(f) = &front {
        acme_note(reporter, f).await;
    }
    Ok(())
}

/// With `acme`, says whether the certificate is a public one yet.
pub async fn acme_note(reporter: &Reporter, front: &Front) {
    if front.tls != TlsMode::Acme {
        return;
    }
    let note = if front.publicly_trusted().await {
        format!("{}: the certificate is from a public ACME CA", front.domain)
    } else {
        format!(
            "{}: the certificate is signed by Caddy's local CA for now: the ACME CA has not issued one yet (it needs DNS pointing at the guest and ports 80/443 reachable from the internet; Caddy keeps trying)",
            front.domain
        )
    };
    let _ = reporter.info(note).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_zone_file_lines() {
        assert_eq!(
            dns_record("app.example.com", "10.0.0.5".parse().unwrap()),
            "app.example.com. A 10.0.0.5"
        );
        assert_eq!(
            dns_record("app.example.com", "fd00::5".parse().unwrap()),
            "app.example.com. AAAA fd00::5"
        );
    }

    #[test]
    fn verdicts_name_the_record_to_create() {
        let guest: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap()];
        let here = Ok(vec!["10.0.0.5".parse().unwrap()]);
        assert_eq!(dns_verdict("a.test", &here, &guest, "10.0.0.5"), None);
        let nowhere = Err("failed to lookup address information".to_string());
        let w = dns_verdict("a.test", &nowhere, &guest, "10.0.0.5").unwrap();
        assert!(w.contains("does not resolve"), "{w}");
        assert!(w.contains("`a.test. A 10.0.0.5`"), "{w}");
        let elsewhere = Ok(vec!["192.0.2.1".parse().unwrap()]);
        let w = dns_verdict("a.test", &elsewhere, &guest, "10.0.0.5").unwrap();
        assert!(w.contains("resolves to 192.0.2.1, not to the guest"), "{w}");
        assert!(w.contains("`a.test. A 10.0.0.5`"), "{w}");
        let w = dns_verdict("a.test", &nowhere, &[], "pve-guest").unwrap();
        assert!(w.contains("pve-guest's address"), "{w}");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_warning_in_bounded_time() {
        // `.invalid` never resolves (RFC 2606); the lookup is bounded either way.
        let w = dns_warnings(&["app.proxdeck.invalid".to_string()], "127.0.0.1").await;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("app.proxdeck.invalid. A 127.0.0.1"), "{w:?}");
        let w = dns_warnings(&["localhost".to_string()], "127.0.0.1").await;
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn the_url_is_the_domains() {
        let f = Front {
            domain: "shop.test".into(),
            tls: TlsMode::Off,
            addr: "127.0.0.1:80".parse().unwrap(),
            local_root: None,
        };
        assert_eq!(f.url(), "http://shop.test/");
        let f = Front {
            tls: TlsMode::Internal,
            ..f
        };
        assert_eq!(f.url(), "https://shop.test/");
        assert!(f.client().is_ok());
        assert_eq!(host_port("fd00::5", 80), "[fd00::5]:80");
    }
}
