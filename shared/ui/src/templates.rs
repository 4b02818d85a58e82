//! The page templates, compiled once per process from the files embedded in
//! the binary. HTML is escaped automatically; charts arrive as SVG the
//! server drew from numbers (see `chart`), marked safe there.

use std::sync::OnceLock;

use kpi_core::Error;
use minijinja::{AutoEscape, Environment, Value};
use serde::Serialize;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.add_filter("path", path);
        for (name, source) in templates![
            "base.html",
            "message.html",
            "integrations.html",
            "alerts.html",
            "reports.html",
            "admin_jobs.html",
            "admin_job.html",
        ] {
            // Embedded at build time; the page tests render every one, so a
            // syntax error shows there rather than at start-up.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "page template does not compile");
            }
        }
        env
    })
}

/// A link within this site for an `href`: only paths of this origin pass
/// (`/…` but not `//…`), others become `#`; escaped for an attribute without
/// turning `/` into an entity.
fn path(url: String) -> Value {
    if !url.starts_with('/') || url.starts_with("//") || url.contains('\\') {
        return Value::from_safe_string("#".into());
    }
    Value::from_safe_string(
        url.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

pub fn render(name: &str, context: impl Serialize) -> Result<String, Error> {
    environment()
        .get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(&context)))
        .map_err(|e| Error::internal(format!("page {name} failed: {e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page template, by name.
    const NAMES: [&str; 7] = [
        "base.html",
        "message.html",
        "integrations.html",
        "alerts.html",
        "reports.html",
        "admin_jobs.html",
        "admin_job.html",
    ];

    #[test]
    fn every_template_compiles() {
        for name in NAMES {
            environment()
                .get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn paths_stay_on_this_site() {
        assert_eq!(path("/a?b=1&c=2".into()).to_string(), "/a?b=1&amp;c=2");
        assert_eq!(path("//evil.example/".into()).to_string(), "#");
        assert_eq!(path("https://evil.example/".into()).to_string(), "#");
        assert_eq!(path("javascript:alert(1)".into()).to_string(), "#");
        assert_eq!(path("/\\evil".into()).to_string(), "#");
        assert_eq!(path("/\"><x".into()).to_string(), "/&quot;&gt;&lt;x");
    }
}
