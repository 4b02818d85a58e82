//! The consent page both OAuth providers show: who asks, for what, Allow or Deny.

use axum::response::Html;

pub fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// `hidden` fields are posted back with the decision; `optional_scope` is a
/// permission the user may untick (granular consent).
pub fn page(
    provider: &str,
    action: &str,
    hidden: &[(&str, &str)],
    permissions: &[&str],
    optional_scope: Option<(&str, &str)>,
) -> Html<String> {
    let mut fields = String::new();
    for (name, value) in hidden {
        fields.push_str(&format!(
            r#"<input type="hidden" name="{}" value="{}">"#,
            escape(name),
            escape(value)
        ));
    }
    let list: String = permissions
        .iter()
        .map(|p| format!("<li>{}</li>", escape(p)))
        .collect();
    let optional = optional_scope
        .map(|(name, label)| {
            format!(
                r#"<label><input type="checkbox" name="{}" value="on" checked> {}</label>"#,
                escape(name),
                escape(label)
            )
        })
        .unwrap_or_default();
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{provider} sandbox: sign in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.5rem 1.25rem;margin-right:.5rem}}</style></head>
<body>
<h1>{provider} (sandbox)</h1>
<p>KPI Integrations wants to:</p>
<ul>{list}</ul>
<form method="post" action="{action}">
{fields}
<p>{optional}</p>
<button type="submit" name="decision" value="allow" id="allow">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
<p><small>This is the built-in provider simulator of KPI Integrations; no real account is used.</small></p>
</body></html>"#,
        provider = escape(provider),
        action = escape(action),
    ))
}
