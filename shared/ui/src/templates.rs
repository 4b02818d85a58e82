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

/// Every page template, embedded at build time.
const SOURCES: [(&str, &str); 7] = templates![
    "base.html",
    "message.html",
    "integrations.html",
    "alerts.html",
    "reports.html",
    "admin_jobs.html",
    "admin_job.html",
];

/// The environment compiles a template the first time a page asks for it (and
/// keeps it): a function that answers one page holds only that page's
/// templates, not all of them (the `ui` function's memory budget at start).
fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.add_filter("path", path);
        // The page tests render every template, so a syntax error shows there
        // rather than on a user's first visit.
        env.set_loader(|name| {
            Ok(SOURCES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, source)| (*source).to_owned()))
        });
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

    #[test]
    fn an_unknown_template_is_an_error() {
        assert!(render("nope.html", ()).is_err());
    }

    #[test]
    fn every_template_compiles() {
        for (name, _) in SOURCES {
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
