//! A deployment's domains: the names Caddy serves the app under on its guest, and how their
//! certificates come ([`TlsMode`]). Owns the rules for a domain name (a DNS host name, IDN
//! names turned into their ASCII form) and for a deployment's list of them; pure, no I/O
//! (the DNS lookups of preflight are `engine::caddy`'s).

use serde::{Deserialize, Serialize};
use std::fmt;

/// How many domains one deployment may have (Caddy takes more; a list this long is a mistake).
pub const MAX_DOMAINS: usize = 20;

/// Where the certificates of a deployment's domains come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Caddy's automatic HTTPS: certificates from an ACME CA (Let's Encrypt); until one is
    /// issued (DNS not set up yet, no way out to the CA), Caddy's local CA signs one.
    #[default]
    Acme,
    /// Caddy's own local CA only: for internal networks and names no public CA can check.
    Internal,
    /// Plain HTTP: no certificate, no redirect.
    Off,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Acme => "acme",
            TlsMode::Internal => "internal",
            TlsMode::Off => "off",
        }
    }

    /// The URL scheme the domains answer on.
    pub fn scheme(self) -> &'static str {
        match self {
            TlsMode::Off => "http",
            _ => "https",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "acme" => Ok(TlsMode::Acme),
            "internal" => Ok(TlsMode::Internal),
            "off" => Ok(TlsMode::Off),
            _ => Err(format!(
                "{s:?} is not a TLS mode: acme (automatic certificates, the default), internal (Caddy's local CA) or off (plain HTTP)"
            )),
        }
    }
}

/// Checks one domain and returns it in the form Caddy and DNS use: lowercase ASCII without a
/// trailing dot (an internationalized name in its `xn--` form).
pub fn normalize_domain(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("is empty; give a name such as app.example.com".into());
    }
    if let Some(c) = trimmed.chars().find(|&c| {
        c.is_whitespace() || c.is_control() || "`$;|&<>()'\"\\{}!/@:,#?%[]=+".contains(c)
    }) {
        return Err(format!(
            "{trimmed:?}: {c:?} is not allowed in a domain name (give the name only, without a scheme, port or path)"
        ));
    }
    if trimmed.contains('*') {
        return Err(format!(
            "{trimmed:?}: wildcard names need a DNS challenge, which proxdeck does not set up; list each name"
        ));
    }
    let name = trimmed.strip_suffix('.').unwrap_or(trimmed);
    let ascii = if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        // The IDNA rules (UTS #46) as `url` applies them to a URL's host.
        match url::Host::parse(name) {
            Ok(url::Host::Domain(d)) => d,
            _ => {
                return Err(format!(
                    "{trimmed:?} is not a valid internationalized domain name"
                ));
            }
        }
    };
    if ascii.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{trimmed:?} is an IP address; a domain is a name (without --domain, the app answers on the guest's address and port)"
        ));
    }
    if ascii.len() > 253 {
        return Err(format!("{trimmed:?} is longer than 253 characters"));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "{trimmed:?} has a single label; give a full name such as {ascii}.example.com"
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(format!(
                "{trimmed:?} has an empty label (two dots in a row, or a leading dot)"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "{trimmed:?}: the label {label:?} is longer than 63 characters"
            ));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "{trimmed:?}: the label {label:?} may hold letters, digits and '-' only"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{trimmed:?}: the label {label:?} must not start or end with '-'"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "{trimmed:?}: the last label is all digits, which no top-level domain is"
        ));
    }
    Ok(ascii)
}

/// Checks a list of domains: each one, no name twice, at most [`MAX_DOMAINS`]. Returns them
/// normalized, in the order given.
pub fn normalize_domains(raw: &[String]) -> Result<Vec<String>, String> {
    if raw.len() > MAX_DOMAINS {
        return Err(format!(
            "{} domains given; at most {MAX_DOMAINS} per deployment",
            raw.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for r in raw {
        let d = normalize_domain(r)?;
        if out.contains(&d) {
            return Err(format!("{d} is given twice"));
        }
        out.push(d);
    }
    Ok(out)
}

/// A change to a deployment's domains (`proxdeck domains ID add|remove NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainChange {
    Add,
    Remove,
}

impl DomainChange {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainChange::Add => "add",
            DomainChange::Remove => "remove",
        }
    }
}

/// The list after `change` of `name` (already normalized), or why it cannot be made.
pub fn apply_change(
    current: &[String],
    change: DomainChange,
    name: &str,
) -> Result<Vec<String>, String> {
    let mut next = current.to_vec();
    match change {
        DomainChange::Add => {
            if next.iter().any(|d| d == name) {
                return Err(format!("{name} is already one of its domains"));
            }
            if next.len() >= MAX_DOMAINS {
                return Err(format!(
                    "it has {MAX_DOMAINS} domains already, the most one deployment may have"
                ));
            }
            next.push(name.to_string());
        }
        DomainChange::Remove => {
            let before = next.len();
            next.retain(|d| d != name);
            if next.len() == before {
                return Err(if current.is_empty() {
                    format!("{name} is not one of its domains (it has none)")
                } else {
                    format!("{name} is not one of its domains ({})", current.join(", "))
                });
            }
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_domains_are_normalized() {
        for (raw, want) in [
            ("app.example.com", "app.example.com"),
            ("App.Example.COM.", "app.example.com"),
            ("  shop.test ", "shop.test"),
            ("a-b.c-d.example", "a-b.c-d.example"),
            ("x1.io", "x1.io"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(normalize_domain(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn bad_domains_say_why() {
        for (raw, why) in [
            ("", "is empty"),
            ("localhost", "single label"),
            ("https://app.example.com", "not allowed"),
            ("app.example.com:443", "not allowed"),
            ("app.example.com/x", "not allowed"),
            ("*.example.com", "wildcard"),
            ("10.0.0.5", "IP address"),
            ("app..example.com", "empty label"),
            (".example.com", "empty label"),
            ("-app.example.com", "start or end"),
            ("app-.example.com", "start or end"),
            ("app_1.example.com", "letters, digits"),
            ("app.example.123", "all digits"),
            ("a;rm -rf /.com", "not allowed"),
            ("$(id).example.com", "not allowed"),
            ("app\nexample.com", "not allowed"),
        ] {
            let err = normalize_domain(raw).unwrap_err();
            assert!(err.contains(why), "{raw:?}: {err}");
        }
        let long_label = format!("{}.example.com", "a".repeat(64));
        assert!(normalize_domain(&long_label).unwrap_err().contains("63"));
        let long_name = format!("{}.com", ["abcdefghij"; 25].join("."));
        assert!(normalize_domain(&long_name).unwrap_err().contains("253"));
    }

    #[test]
    fn lists_refuse_repeats_and_excess() {
        let twice = vec!["a.example.com".to_string(), "A.example.com.".to_string()];
        assert!(normalize_domains(&twice).unwrap_err().contains("twice"));
        let many: Vec<String> = (0..=MAX_DOMAINS)
            .map(|i| format!("a{i}.example.com"))
            .collect();
        assert!(normalize_domains(&many).unwrap_err().contains("at most"));
        assert_eq!(
            normalize_domains(&["B.example.com".into(), "a.example.com".into()]).unwrap(),
            ["b.example.com", "a.example.com"]
        );
    }

    #[test]
    fn changes_add_and_remove_once() {
        let now = vec!["a.test".to_string()];
        assert_eq!(
            apply_change(&now, DomainChange::Add, "b.test").unwrap(),
            ["a.test", "b.test"]
        );
        assert!(
            apply_change(&now, DomainChange::Add, "a.test")
                .unwrap_err()
                .contains("already")
        );
        assert!(
            apply_change(&now, DomainChange::Remove, "a.test")
                .unwrap()
                .is_empty()
        );
        let err = apply_change(&now, DomainChange::Remove, "b.test").unwrap_err();
        assert!(err.contains("not one of its domains (a.test)"), "{err}");
    }

    #[test]
    fn tls_modes_parse_and_name_the_choices() {
        assert_eq!("Internal".parse::<TlsMode>(), Ok(TlsMode::Internal));
        assert_eq!("off".parse::<TlsMode>(), Ok(TlsMode::Off));
        assert_eq!(TlsMode::default(), TlsMode::Acme);
        let err = "letsencrypt".parse::<TlsMode>().unwrap_err();
        assert!(err.contains("acme") && err.contains("internal") && err.contains("off"));
        assert_eq!(TlsMode::Off.scheme(), "http");
        assert_eq!(TlsMode::Internal.scheme(), "https");
    }
}
