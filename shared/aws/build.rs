//! Picks the root certificates AWS endpoints chain to (Amazon Trust Services:
//! Amazon Root CA 1–4, and Starfield Services Root G2, which cross-signs them)
//! out of the Mozilla set of `webpki-root-certs`, and writes them as PEM for
//! `src/sdk.rs` to compile in.

use base64::Engine as _;

const SUBJECTS: [&[u8]; 2] = [
    b"Amazon Root CA ",
    b"Starfield Services Root Certificate Authority",
];

fn main() {
    let mut pem = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let der: &[u8] = cert.as_ref();
        if !SUBJECTS
            .iter()
            .any(|s| der.windows(s.len()).any(|w| w == *s))
        {
            continue;
        }
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    assert!(
        pem.matches("BEGIN CERTIFICATE").count() >= 5,
        "the Mozilla set no longer has Amazon's roots"
    );
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("aws-roots.pem");
    std::fs::write(out, pem).unwrap();
    println!("cargo::rerun-if-changed=build.rs");
}
