//! Provisioning scripts: rendered per deployment from the templates in `assets/provision/`,
//! with every value shell-quoted by `shlex` through the `q` helper (never spliced raw), then
//! run on the guest with `bash -euo pipefail`.
//!
//! The script prints `proxdeck-commit: <sha>` once it has checked the source out; the pipeline
//! reads the deployed commit from that line.

use crate::domain::Framework;
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde::Serialize;

const PYTHON: &str = include_str!("../../assets/provision/python.sh.hbs");

/// The line prefix the scripts use to report the deployed commit.
pub const COMMIT_MARKER: &str = "proxdeck-commit: ";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "no provisioning recipe for {0} yet; deploy a Python app (flask, fastapi, django) or add a recipe"
    )]
    NoRecipe(String),
    #[error("the provisioning script does not render: {0}")]
    Render(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// Everything a script needs to know about one deployment.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptVars {
    pub name: String,
    pub framework_name: String,
    pub app_dir: String,
    pub repo: String,
    /// Empty: the repository's default branch.
    pub git_ref: String,
    pub port: u16,
    pub install: String,
    pub build: String,
    pub start: String,
    pub env: Vec<EnvVar>,
}

/// `{{q value}}`: the value as one shell word (shlex quoting). Refuses what cannot be quoted.
fn quote_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let param = h
        .param(0)
        .ok_or_else(|| RenderError::from(RenderErrorReason::ParamNotFoundForIndex("q", 0)))?;
    let text = match param.value() {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        other => {
            return Err(RenderErrorReason::Other(format!("q: cannot quote {other}")).into());
        }
    };
    let quoted = shlex::try_quote(&text)
        .map_err(|e| RenderError::from(RenderErrorReason::Other(format!("q: {e}"))))?;
    out.write(&quoted)?;
    Ok(())
}

fn recipe(framework: &Framework) -> Result<&'static str, ProvisionError> {
    match framework.language.as_str() {
        "python" => Ok(PYTHON),
        _ => Err(ProvisionError::NoRecipe(framework.name.clone())),
    }
}

/// Renders the provisioning script for `framework` with `vars`.
pub fn render_script(framework: &Framework, vars: &ScriptVars) -> Result<String, ProvisionError> {
    let template = recipe(framework)?;
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("q", Box::new(quote_helper));
    hb.render_template(template, vars)
        .map_err(|e| ProvisionError::Render(e.to_string()))
}

/// The commit a script reported, if this line is its marker.
pub fn commit_from_line(line: &str) -> Option<String> {
    let sha = line.strip_prefix(COMMIT_MARKER)?.trim();
    (sha.len() >= 7 && sha.chars().all(|c| c.is_ascii_hexdigit())).then(|| sha.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Catalog;

    fn vars() -> ScriptVars {
        ScriptVars {
            name: "shop".into(),
            framework_name: "Flask".into(),
            app_dir: "/opt/proxdeck/shop".into(),
            repo: "https://github.com/acme/shop.git".into(),
            git_ref: "".into(),
            port: 5000,
            install: "pip install -r requirements.txt gunicorn".into(),
            build: "".into(),
            start: "gunicorn --bind 0.0.0.0:$PORT app:app".into(),
            env: vec![EnvVar {
                name: "GREETING".into(),
                value: "it's $(rm -rf /) `id`; \"quoted\" ünïcode".into(),
            }],
        }
    }

    fn flask() -> Framework {
        Catalog::builtin().get("flask").unwrap().clone()
    }

    #[test]
    fn values_are_single_shell_words() {
        let script = render_script(&flask(), &vars()).unwrap();
        assert!(
            script.contains("START_CMD='gunicorn --bind 0.0.0.0:$PORT app:app'"),
            "{script}"
        );
        assert!(script.contains("GIT_REF=''"));
        assert!(script.contains("APP_PORT=5000"));
        // The hostile value is quoted so that bash reads it back byte for byte.
        let line = script
            .lines()
            .find(|l| l.contains("export %s=%q") && l.contains("GREETING"))
            .unwrap();
        let words = shlex::split(line.trim()).unwrap();
        assert_eq!(words[3], "it's $(rm -rf /) `id`; \"quoted\" ünïcode");
    }

    #[test]
    fn the_script_is_valid_bash() {
        let script = render_script(&flask(), &vars()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sh");
        std::fs::write(&path, script).unwrap();
        let status = std::process::Command::new("bash")
            .arg("-n")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn commit_marker() {
        assert_eq!(
            commit_from_line("proxdeck-commit: 0123456789abcdef0123456789abcdef01234567")
                .as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(commit_from_line("proxdeck-commit: nope"), None);
        assert_eq!(commit_from_line("other"), None);
    }
}
