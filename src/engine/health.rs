//! The HTTP health check: GET the app's URL until it answers as expected (a success, one
//! status, or any answer of the app's own: see [`Expect`]) or a deadline passes. Bounded in
//! attempts and time; each attempt has its own timeout. The error carries the last HTTP status
//! so the caller can say what to change (a 4xx: the health path); it words no next step.
//! Attempts come every 100 ms for the first [`FAST_FOR`] (an app that restarts after a release
//! switch is found as soon as it listens), then every 500 ms.

use std::time::{Duration, Instant};

/// How long the health check tries every 100 ms before it slows to every 500 ms.
pub const FAST_FOR: Duration = Duration::from_secs(10);

/// What counts as the app being up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any 2xx or 3xx.
    Success,
    /// Exactly this status (`--health-status`).
    Status(u16),
    /// Any HTTP answer below 500: the app's own server answered (a 404 for a path the app
    /// does not route still proves it is up), and it is not failing.
    Answer,
}

impl Expect {
    fn accepts(self, status: u16) -> bool {
        match self {
            Expect::Success => (200..400).contains(&status),
            Expect::Status(want) => status == want,
            Expect::Answer => (100..500).contains(&status),
        }
    }

    /// In words, for the error: "a success (2xx or 3xx)".
    pub fn words(self) -> String {
        match self {
            Expect::Success => "a success (2xx or 3xx)".into(),
            Expect::Status(want) => format!("HTTP {want}"),
            Expect::Answer => "an HTTP answer below 500".into(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{url} did not answer with {wanted} within {secs} s (last: {last})")]
pub struct HealthError {
    pub url: String,
    pub secs: u64,
    pub last: String,
    /// What was waited for, in words.
    pub wanted: String,
    /// The last HTTP status the app answered with, when it answered at all.
    pub last_status: Option<u16>,
}

/// What the check waits for: the deployment's status, else any answer for a framework whose
/// apps answer no one path (FastAPI without its docs) unless the deployment names a path,
/// else a success.
pub fn expectation(status: Option<u16>, own_path: bool, any_answer: bool) -> Expect {
    match status {
        Some(s) => Expect::Status(s),
        None if any_answer && !own_path => Expect::Answer,
        None => Expect::Success,
    }
}

/// The path a deployment is checked at and what counts as up there: its own `--health-path`
/// and `--health-status`, else its framework's (`fw`; `None`: a framework the catalog no
/// longer has, checked at `/` for a success).
pub fn check_for(
    d: &crate::domain::Deployment,
    fw: Option<&crate::domain::Framework>,
) -> (String, Expect) {
    let path = d
        .overrides
        .health_path
        .clone()
        .or_else(|| fw.map(|f| f.health_path.clone()))
        .unwrap_or_else(|| "/".into());
    let expect = expectation(
        d.overrides.health_status,
        d.overrides.health_path.is_some(),
        fw.is_some_and(|f| f.health_any_answer),
    );
    (path, expect)
}

/// What the app answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Healthy {
    pub status: u16,
    pub attempts: u32,
}

/// Polls `url` until it answers 2xx or 3xx, for at most `within`.
pub async fn wait_healthy(
    url: &str,
    within: Duration,
    on_attempt: impl FnMut(&str),
) -> Result<Healthy, HealthError> {
    wait_for_status(url, None, within, on_attempt).await
}

/// Polls `url` until it answers `expect` (any 2xx or 3xx when `None`), for at most `within`.
pub async fn wait_for_status(
    url: &str,
    expect: Option<u16>,
    within: Duration,
    on_attempt: impl FnMut(&str),
) -> Result<Healthy, HealthError> {
    let expect = expect.map_or(Expect::Success, Expect::Status);
    wait_for(url, expect, within, on_attempt).await
}

/// Polls `url` until its answer is what `expect` accepts, for at most `within`.
pub async fn wait_for(
    url: &str,
    expect: Expect,
    within: Duration,
    on_attempt: impl FnMut(&str),
) -> Result<Healthy, HealthError> {
    let client = client_builder().build().map_err(|e| HealthError {
        url: url.to_string(),
        secs: 0,
        last: e.to_string(),
        wanted: expect.words(),
        last_status: None,
    })?;
    wait_with(&client, url, expect, within, on_attempt).await
}

/// The health check's HTTP client settings: 10 s per attempt, redirects not followed (a 3xx
/// is an answer), no proxy. `engine::caddy` adds the domain's address and roots.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

/// [`wait_for`] with a client of the caller's (e.g. one that sends a domain to the guest's
/// address and trusts Caddy's local CA).
pub async fn wait_with(
    client: &reqwest::Client,
    url: &str,
    expect: Expect,
    within: Duration,
    mut on_attempt: impl FnMut(&str),
) -> Result<Healthy, HealthError> {
    let start = Instant::now();
    let mut attempts = 0u32;
    let mut last = String::from("no attempt");
    let mut last_status = None;
    while start.elapsed() < within {
        attempts += 1;
        match client.get(url).send().await {
            Ok(resp) if expect.accepts(resp.status().as_u16()) => {
                return Ok(Healthy {
                    status: resp.status().as_u16(),
                    attempts,
                });
            }
            Ok(resp) => {
                last_status = Some(resp.status().as_u16());
                last = match expect {
                    Expect::Status(want) => format!("HTTP {} (expected {want})", resp.status()),
                    _ => format!("HTTP {}", resp.status()),
                }
            }
            Err(e) => {
                last_status = None;
                last = error_text(&e);
            }
        }
        on_attempt(&format!("health check {url}: {last} (attempt {attempts})"));
        let every = if start.elapsed() < FAST_FOR {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(500)
        };
        let wait = every.min(within.saturating_sub(start.elapsed()));
        tokio::time::sleep(wait).await;
    }
    Err(HealthError {
        url: url.to_string(),
        secs: within.as_secs(),
        last,
        wanted: expect.words(),
        last_status,
    })
}

fn error_text(e: &reqwest::Error) -> String {
    // A TLS failure (an unknown certificate, no certificate for the name) counts as a
    // connect error: its cause says more than "refused".
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let chain = causes.join(": ");
    let lower = chain.to_ascii_lowercase();
    if e.is_connect() && (lower.contains("certificate") || lower.contains("tls")) {
        format!("TLS: {chain}")
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_server_that_comes_up_late_is_found_healthy() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/");
        let server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            let l = tokio::net::TcpListener::bind(addr).await.unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .unwrap();
        });
        let mut notes = 0;
        let h = wait_healthy(&url, Duration::from_secs(20), |_| notes += 1)
            .await
            .unwrap();
        assert_eq!(h.status, 200);
        assert!(h.attempts >= 2 && notes >= 1);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_expected_status_is_waited_for() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for code in ["503 Service Unavailable", "200 OK", "204 No Content"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer =
                    format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let mut notes = Vec::new();
        let h = wait_for_status(
            &format!("http://{addr}/healthz"),
            Some(204),
            Duration::from_secs(20),
            |n| notes.push(n.to_string()),
        )
        .await
        .unwrap();
        assert_eq!((h.status, h.attempts), (204, 3));
        assert!(notes[1].contains("HTTP 200 OK (expected 204)"), "{notes:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn nothing_listening_fails_with_the_url_and_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = wait_healthy(&format!("http://{addr}/"), Duration::from_secs(1), |_| {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()));
        assert!(err.last.contains("refused"), "{}", err.last);
        assert_eq!(err.last_status, None);
    }

    /// A server answering every request with `code`, until dropped.
    async fn answering(code: &'static str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for _ in 0..50 {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer =
                    format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (addr, server)
    }

    #[test]
    fn the_expectation_follows_the_deployment_then_the_framework() {
        assert_eq!(expectation(Some(204), false, true), Expect::Status(204));
        assert_eq!(expectation(None, false, true), Expect::Answer);
        assert_eq!(expectation(None, true, true), Expect::Success);
        assert_eq!(expectation(None, false, false), Expect::Success);
        let catalog = crate::domain::Catalog::builtin();
        let mut d = crate::domain::Deployment::default();
        let fastapi = catalog.get("fastapi");
        assert_eq!(check_for(&d, fastapi), ("/".to_string(), Expect::Answer));
        d.overrides.health_path = Some("/healthz".into());
        assert_eq!(
            check_for(&d, fastapi),
            ("/healthz".to_string(), Expect::Success)
        );
        assert_eq!(check_for(&d, None).0, "/healthz");
        let flask = crate::domain::Deployment::default();
        assert_eq!(
            check_for(&flask, catalog.get("flask")),
            ("/".to_string(), Expect::Success)
        );
    }

    #[tokio::test]
    async fn any_answer_below_500_counts_when_asked_for() {
        let (addr, server) = answering("404 Not Found").await;
        let url = format!("http://{addr}/");
        let h = wait_for(&url, Expect::Answer, Duration::from_secs(10), |_| {})
            .await
            .unwrap();
        assert_eq!(h.status, 404);
        // The same answer is no success by default, and the error keeps the status.
        let err = wait_for(&url, Expect::Success, Duration::from_secs(1), |_| {})
            .await
            .unwrap_err();
        assert_eq!(err.last_status, Some(404));
        assert!(err.to_string().contains("2xx or 3xx"), "{err}");
        assert!(!err.to_string().contains("ID"), "{err}");
        server.abort();
        let (addr, server) = answering("500 Internal Server Error").await;
        let err = wait_for(
            &format!("http://{addr}/"),
            Expect::Answer,
            Duration::from_secs(1),
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(err.last_status, Some(500));
        server.abort();
    }
}
