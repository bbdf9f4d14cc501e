//! Loopback addresses, free ports, bounded waits and a tiny HTTP/1.0 client.
//!
//! Every test part gets its own 127.a.b.c address (any address in 127.0.0.0/8 works without
//! setup on Linux), so tests can run in parallel. Traffic goes to loopback only.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Random bytes from the kernel (tests have no `rand` crate).
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    u64::from_le_bytes(buf)
}

/// A random lowercase hex string of `len` characters.
pub fn random_hex(len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        s.push_str(&format!("{:016x}", random_u64()));
    }
    s.truncate(len);
    s
}

/// A fresh loopback address for one test part: 127.a.b.c, never 127.0.0.x, unique within
/// this process and random across processes (other test runs on the same machine).
pub fn loopback() -> Ipv4Addr {
    static BASE: OnceLock<(u8, u8)> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (a, b) = *BASE.get_or_init(|| {
        let r = random_u64();
        (20 + (r % 230) as u8, ((r >> 8) % 200) as u8)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let c = 2 + (n % 250) as u8;
    let b = b.wrapping_add((n / 250) as u8);
    Ipv4Addr::new(127, a, b, c)
}

/// A fresh block of `size` loopback addresses (a power of two, at most 256) for an address
/// pool: `127.a.b.c/len` with `a` in 250..=254, a range `loopback()` never hands out, so the
/// pool's addresses are free of other test parts. Random across processes.
pub fn loopback_pool(size: u32) -> (Ipv4Addr, u8) {
    assert!(size.is_power_of_two() && (2..=256).contains(&size));
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let r = random_u64();
    let n = NEXT.fetch_add(1, Ordering::Relaxed) as u64;
    let a = 250 + (r % 5) as u8;
    let b = ((r >> 8) % 256) as u8;
    let blocks = 256 / size as u64;
    let c = (((r >> 16) + n) % blocks) as u32 * size;
    (
        Ipv4Addr::new(127, a, b, c as u8),
        32 - size.trailing_zeros() as u8,
    )
}

/// A port that was free on `ip` a moment ago (bind port 0, read it, release it).
pub fn free_port(ip: Ipv4Addr) -> Result<u16> {
    let listener = TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}:0"))?;
    Ok(listener.local_addr()?.port())
}

/// A port free on every address (for apps that bind 0.0.0.0).
pub fn free_port_any() -> Result<u16> {
    free_port(Ipv4Addr::UNSPECIFIED)
}

/// Polls until `addr` accepts a TCP connection, `alive` says the server died, or `timeout`.
pub fn wait_for_port(
    addr: SocketAddr,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
            return Ok(());
        }
        alive()?;
        if Instant::now() >= deadline {
            bail!("{addr} did not accept connections within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP answer: status code and body as text.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: String,
}

/// One bounded HTTP/1.0 GET of an `http://` URL with std's TcpStream.
pub fn http_get(url: &str, timeout: Duration) -> Result<HttpAnswer> {
    let parsed = url::Url::parse(url).with_context(|| format!("parse {url}"))?;
    if parsed.scheme() != "http" {
        bail!("only http:// URLs: {url}");
    }
    let host = parsed.host_str().context("URL without host")?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addr = (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .context("no address")?;
    if !addr.ip().is_loopback() {
        bail!("tests send traffic to loopback only, not {addr}");
    }
    let mut path = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: proxdeck-tests\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status line in {head:?}"))?;
    Ok(HttpAnswer {
        status,
        body: body.to_string(),
    })
}

/// Polls `url` until it answers 200 or `timeout` passes; returns the last answer or error.
pub fn wait_http_ok(url: &str, timeout: Duration) -> Result<HttpAnswer> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = http_get(url, Duration::from_secs(5));
        match &last {
            Ok(a) if a.status == 200 => return last,
            _ if Instant::now() >= deadline => {
                return last.and_then(|a| bail!("{url} answered {} : {}", a.status, a.body));
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
