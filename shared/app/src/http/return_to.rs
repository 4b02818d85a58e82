//! Where a browser is sent back to after a flow (OAuth, dev login): a page of
//! this site only. The decision is made on the parsed URL — the `return_to`
//! joined onto `KPI_PUBLIC_URL` must keep its origin and may not become a
//! scheme-relative path — and the browser gets an absolute URL, so no
//! normalisation by the browser can turn it into another host.

use kpi_core::Error;
use url::{Position, Url};

/// Longest `return_to` accepted.
pub const MAX_LEN: usize = 512;

fn refused() -> Error {
    Error::validation(
        "return_to",
        "must be a path on this site, such as /settings/integrations",
    )
}

/// The absolute URL on `public` that `raw` names, or a 422.
pub fn resolve(public: &Url, raw: &str) -> Result<Url, Error> {
    let plain = raw.len() <= MAX_LEN
        && raw.starts_with('/')
        && !raw
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace());
    if !plain {
        return Err(refused());
    }
    let joined = public.join(raw).map_err(|_| refused())?;
    let path = joined.path();
    // `%2f%2f` stays a path on this host for browsers; refused all the same, as
    // a server behind us might decode it.
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let same_site = joined.origin() == public.origin()
        && joined.username().is_empty()
        && joined.password().is_none()
        && !path.starts_with("//")
        && !decoded.starts_with("//")
        && !decoded.starts_with("/\\");
    if same_site {
        Ok(joined)
    } else {
        Err(refused())
    }
}

/// What to keep of a checked `return_to`: its path and query on this site.
pub fn checked(public: &Url, raw: &str) -> Result<String, Error> {
    let url = resolve(public, raw)?;
    Ok(url[Position::BeforePath..Position::AfterQuery].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKS: &[&str] = &[
        "https://evil.example/x",
        "//evil.example/x",
        "/\\evil.example",
        "/\\/evil.example",
        "javascript:alert(1)",
        "https:evil.example",
        "/.//evil.example",
        "/./evil.example/..//evil.example",
        "/%2e//evil.example",
        "/%2E//evil.example",
        "/a/..//evil.example",
        "/%2f%2fevil.example",
        "/%2F/evil.example",
        "/%5cevil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/ /evil.example",
        "//user@evil.example",
        "//evil.example@kpi.example.com",
        "//ｅｖｉｌ.example",
        "/\u{3000}/evil.example",
        "",
        "settings",
    ];

    #[test]
    fn only_pages_of_this_site_are_accepted() {
        let public = Url::parse("https://kpi.example.com").unwrap();
        for raw in ATTACKS {
            assert!(resolve(&public, raw).is_err(), "{raw:?} was accepted");
        }
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert!(resolve(&public, &long).is_err());
        for (raw, kept) in [
            (
                "/settings/integrations?workspace=demo&tab=ads",
                "/settings/integrations?workspace=demo&tab=ads",
            ),
            ("/a/../settings", "/settings"),
            ("/user@host", "/user@host"),
        ] {
            let url = resolve(&public, raw).unwrap();
            assert_eq!(url.origin(), public.origin(), "{raw}");
            assert_eq!(checked(&public, raw).unwrap(), kept);
        }
    }
}
