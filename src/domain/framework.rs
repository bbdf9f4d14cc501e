//! The framework catalog: data in `assets/frameworks.toml`, compiled into the binary and
//! parsed here into typed `Framework` entries. This module owns the catalog's shape and its
//! consistency checks; provisioning and detection read it, nothing writes it.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

const BUILTIN: &str = include_str!("../../assets/frameworks.toml");

/// One rule that recognises a framework from a repository's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectRule {
    /// A path relative to the repository root, e.g. `package.json` or `manage.py`.
    pub file: String,
    /// When set, the file must contain this text (case-insensitive), e.g. `"next"`.
    #[serde(default)]
    pub contains: Option<String>,
}

/// One framework the catalog knows how to deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    /// Stable id used on the command line and in the store (`flask`, `nextjs`, ...).
    pub id: String,
    /// Display name (`Flask`, `Next.js`, ...).
    pub name: String,
    /// `python`, `node`, `php` or `fullstack`.
    pub language: String,
    /// What the guest needs installed (e.g. `python3`, `nodejs`, `php-fpm nginx`).
    pub runtime: String,
    /// The port the app listens on unless the user picks another.
    pub default_port: u16,
    /// Shell command that installs the app's dependencies, run in the app folder.
    pub install: String,
    /// Shell command that builds the app (empty when there is nothing to build).
    #[serde(default)]
    pub build: String,
    /// Shell command that starts the app in the foreground; `$PORT` is the app port.
    pub start: String,
    /// HTTP path that answers when the app is up.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// All rules must match for the framework to be detected (an empty list never matches).
    #[serde(default)]
    pub detect: Vec<DetectRule>,
    /// Higher wins when several frameworks match (MERN over Express, Next.js over React).
    #[serde(default)]
    pub detect_priority: i32,
}

fn default_health_path() -> String {
    "/".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "framework")]
    pub frameworks: Vec<Framework>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("framework catalog is not valid TOML: {0}")]
    Parse(String),
    #[error("framework catalog: {0}")]
    Invalid(String),
}

impl Catalog {
    /// Parses and checks a catalog (ids unique and lowercase, ports non-zero, commands set).
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog =
            toml::from_str(text).map_err(|e| CatalogError::Parse(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for fw in &catalog.frameworks {
            if fw.id.is_empty()
                || !fw
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return Err(CatalogError::Invalid(format!(
                    "id {:?} must be lowercase letters and digits",
                    fw.id
                )));
            }
            if !seen.insert(fw.id.clone()) {
                return Err(CatalogError::Invalid(format!(
                    "id {:?} appears twice",
                    fw.id
                )));
            }
            if fw.default_port == 0 {
                return Err(CatalogError::Invalid(format!(
                    "{}: default_port is 0",
                    fw.id
                )));
            }
            if fw.install.trim().is_empty() || fw.start.trim().is_empty() {
                return Err(CatalogError::Invalid(format!(
                    "{}: install and start commands are required",
                    fw.id
                )));
            }
            if !fw.health_path.starts_with('/') {
                return Err(CatalogError::Invalid(format!(
                    "{}: health_path must start with /",
                    fw.id
                )));
            }
        }
        Ok(catalog)
    }

    /// The catalog shipped in `assets/frameworks.toml`.
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            // The built-in catalog is checked by the test suite; failing here is a build defect.
            Catalog::parse(BUILTIN).expect("assets/frameworks.toml is valid")
        })
    }

    pub fn get(&self, id: &str) -> Option<&Framework> {
        let id = id.to_ascii_lowercase();
        self.frameworks.iter().find(|f| f.id == id)
    }

    pub fn ids(&self) -> Vec<&str> {
        self.frameworks.iter().map(|f| f.id.as_str()).collect()
    }
}
