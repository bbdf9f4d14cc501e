//! The HTTP health check: GET the app's URL until it answers with a success (2xx/3xx) or a
//! deadline passes. Bounded in attempts and time; each attempt has its own timeout. Attempts
//! come every 100 ms for the first [`FAST_FOR`] (an app that restarts after a release switch
//! is found as soon as it listens), then every 500 ms.

use std::time::{Duration, Instant};

/// How long the health check tries every 100 ms before it slows to every 500 ms.
pub const FAST_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{url} did not answer with a success within {secs} s (last: {last}); check the app's own log (`proxdeck logs ID`) and that it listens on 0.0.0.0"
)]
pub struct HealthError {
    pub url: String,
    pub secs: u64,
    pub last: String,
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
    mut on_attempt: impl FnMut(&str),
) -> Result<Healthy, HealthError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| HealthError {
            url: url.to_string(),
            secs: 0,
            last: e.to_string(),
        })?;
    let start = Instant::now();
    let mut attempts = 0u32;
    let mut last = String::from("no attempt");
    while start.elapsed() < within {
        attempts += 1;
        match client.get(url).send().await {
            Ok(resp)
                if expect.map_or(
                    resp.status().is_success() || resp.status().is_redirection(),
                    |want| resp.status().as_u16() == want,
                ) =>
            {
                return Ok(Healthy {
                    status: resp.status().as_u16(),
                    attempts,
                });
            }
            Ok(resp) => {
                last = match expect {
                    Some(want) => format!("HTTP {} (expected {want})", resp.status()),
                    None => format!("HTTP {}", resp.status()),
                }
            }
            Err(e) => last = error_text(&e),
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
    })
}

fn error_text(e: &reqwest::Error) -> String {
    if e.is_connect() {
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
    }
}
