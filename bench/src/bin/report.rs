//! Writes the measured part of docs/benchmarks.md (between its `make bench`
//! markers) and its SVG charts in docs/images/, from the JSON files the other
//! bench binaries wrote and the zips `make package` built, with the machine
//! they ran on. Each figure stands beside its floor and its budget.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

const START: &str = "<!-- make bench: start -->";
const END: &str = "<!-- make bench: end -->";

/// Budgets (DESIGN): first response ≤ 2.5× the floor, peak RSS ≤ 16 MiB,
/// zip ≤ 6 MB, API p99 ≤ 5× the floor.
const COLD_RATIO: f64 = 2.5;
const RSS_KIB: f64 = 16.0 * 1024.0;
const ZIP_BYTES: u64 = 6_000_000;
const P99_RATIO: f64 = 5.0;

fn read(path: &Path) -> Option<Vec<Value>> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<Value>(&text)
        .ok()?
        .as_array()
        .cloned()
}

fn command(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    format!(
        "{} × {cpu}, {:.0} GiB, {}, {}",
        command("nproc", &[]),
        mem_kib as f64 / 1024.0 / 1024.0,
        command("uname", &["-sr"]),
        command("rustc", &["--version"]),
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok { "within" } else { "**over**" }
}

/// Horizontal bars, one per row, with a dashed budget line.
fn bars_svg(title: &str, rows: &[(String, f64)], unit: &str, budget: Option<f64>) -> String {
    let (w, left, row_h) = (720.0_f64, 150.0_f64, 24.0_f64);
    let h = rows.len() as f64 * row_h + 40.0;
    let max = rows
        .iter()
        .map(|r| r.1)
        .chain(budget)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let scale = (w - left - 90.0) / max;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12" role="img" aria-label="{title}"><title>{title}</title><text x="0" y="14" font-weight="bold">{title}</text>"##
    );
    for (i, (name, value)) in rows.iter().enumerate() {
        let y = 24.0 + i as f64 * row_h;
        let colour = if name.contains("floor") {
            "#6b7280"
        } else {
            "#1d4ed8"
        };
        let _ = write!(
            svg,
            r##"<text x="0" y="{:.0}">{name}</text><rect x="{left}" y="{y:.0}" width="{:.1}" height="16" fill="{colour}"/><text x="{:.1}" y="{:.0}">{value:.1} {unit}</text>"##,
            y + 12.0,
            (value * scale).max(1.0),
            left + value * scale + 4.0,
            y + 12.0
        );
    }
    if let Some(b) = budget {
        let x = left + b * scale;
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="20" x2="{x:.1}" y2="{:.0}" stroke="#b91c1c" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.0}" fill="#b91c1c">budget</text>"##,
            h - 4.0,
            x + 3.0,
            h - 6.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn main() {
    let results = kpi_bench::results_dir();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let images = root.join("docs/images");
    std::fs::create_dir_all(&images).unwrap();
    let mut md = String::new();
    let _ = writeln!(md, "{START}");
    let _ = writeln!(
        md,
        "Written by `make bench` on {} ({}).\n",
        command("date", &["-u", "+%Y-%m-%d"]),
        machine()
    );

    // Cold starts.
    if let Some(rows) = read(&results.join("coldstart.json")) {
        let floor = rows
            .iter()
            .find(|r| r["function"] == "hello")
            .map(|r| r["first_response_ms"].as_f64().unwrap_or(f64::NAN))
            .unwrap_or(f64::NAN);
        let _ = writeln!(md, "### Cold start (local Runtime API, moto for AWS)\n");
        let _ = writeln!(
            md,
            "Each function started {} times on its sample event from `events/` \
             (after one unmeasured start), with its real start-up: configuration, the \
             Secrets Manager secret, the AWS clients (against `moto_server`). Medians. \
             The floor is `hello`, the smallest `lambda_runtime` function, built in the \
             same run. Budgets: first response ≤ {COLD_RATIO}× the floor, peak RSS ≤ 16 MiB.\n",
            rows[0]["runs"]
        );
        let _ = writeln!(
            md,
            "| function | exec → first poll | exec → first response | × floor | peak RSS | budget |\n|---|---|---|---|---|---|"
        );
        let mut chart = Vec::new();
        for r in &rows {
            let name = r["function"].as_str().unwrap_or("?");
            let poll = r["first_poll_ms"].as_f64().unwrap_or(f64::NAN);
            let first = r["first_response_ms"].as_f64().unwrap_or(f64::NAN);
            let rss = r["peak_rss_kib"].as_f64().unwrap_or(f64::NAN);
            if first.is_nan() {
                let _ = writeln!(
                    md,
                    "| {name} | — | no answer ({}) | — | — | **not measured** |",
                    r["answer"].as_str().unwrap_or("")
                );
                continue;
            }
            let ratio = first / floor;
            let ok = ratio <= COLD_RATIO && rss <= RSS_KIB;
            let label = if name == "hello" {
                "hello (floor)"
            } else {
                name
            };
            let _ = writeln!(
                md,
                "| {label} | {poll:.1} ms | {first:.1} ms | {ratio:.2} | {:.1} MiB | {} |",
                rss / 1024.0,
                if name == "hello" { "—" } else { verdict(ok) }
            );
            chart.push((label.to_owned(), first));
        }
        std::fs::write(
            images.join("bench-coldstart.svg"),
            bars_svg(
                "exec → first response (ms)",
                &chart,
                "ms",
                Some(floor * COLD_RATIO),
            ),
        )
        .unwrap();
        let _ = writeln!(md, "\n![Cold starts](images/bench-coldstart.svg)\n");
    }

    // Zips.
    let lambda = results.parent().unwrap().join("lambda");
    let mut zips: Vec<(String, u64)> = std::fs::read_dir(&lambda)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let zip = e.path().join("bootstrap.zip");
            let size = std::fs::metadata(&zip).ok()?.len();
            Some((e.file_name().to_string_lossy().into_owned(), size))
        })
        .collect();
    zips.sort();
    if !zips.is_empty() {
        let _ = writeln!(md, "### Zip size (cargo-lambda, arm64)\n");
        let _ = writeln!(
            md,
            "From `make package` (`cargo lambda build --release --arm64 --output-format zip`). Budget: 6 MB.\n"
        );
        let _ = writeln!(md, "| function | zip | budget |\n|---|---|---|");
        for (name, size) in &zips {
            let _ = writeln!(
                md,
                "| {name} | {:.2} MB | {} |",
                *size as f64 / 1e6,
                verdict(*size <= ZIP_BYTES)
            );
        }
        let _ = writeln!(md);
    }

    // API latency.
    if let Some(rows) = read(&results.join("api_latency.json")) {
        let _ = writeln!(md, "### API latency (dev server, release, loopback)\n");
        let _ = writeln!(
            md,
            "A Rust load generator (one keep-alive connection per task) against the dev \
             server in its own process; the floor is `/healthz`, a static answer through \
             the same stack. The KPI query reads 90 days of `ga4.sessions`. Budget: p99 ≤ \
             {P99_RATIO}× the floor's p99 at the same concurrency.\n"
        );
        let _ = writeln!(
            md,
            "| connections | case | requests/s | p50 | p99 | p99 × floor | budget |\n|---|---|---|---|---|---|---|"
        );
        let mut chart = Vec::new();
        for r in &rows {
            let c = r["connections"].as_u64().unwrap_or(0);
            let case = r["case"].as_str().unwrap_or("?");
            let floor = rows
                .iter()
                .find(|f| f["connections"] == r["connections"] && f["case"] == "floor: /healthz")
                .and_then(|f| f["p99_ms"].as_f64())
                .unwrap_or(f64::NAN);
            let p99 = r["p99_ms"].as_f64().unwrap_or(f64::NAN);
            let ratio = p99 / floor;
            let is_floor = case.starts_with("floor");
            let _ = writeln!(
                md,
                "| {c} | {case} | {:.0} | {:.2} ms | {p99:.2} ms | {} | {} |",
                r["throughput_rps"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(f64::NAN),
                if is_floor {
                    "—".to_owned()
                } else {
                    format!("{ratio:.2}")
                },
                if is_floor {
                    "—"
                } else {
                    verdict(ratio <= P99_RATIO)
                }
            );
            chart.push((format!("{case} ×{c}"), p99));
        }
        std::fs::write(
            images.join("bench-api-p99.svg"),
            bars_svg(
                "p99 latency (ms) by case and connections",
                &chart,
                "ms",
                None,
            ),
        )
        .unwrap();
        let _ = writeln!(md, "\n![API p99](images/bench-api-p99.svg)\n");
    }
    let _ = write!(md, "{END}");

    let doc_path = root.join("docs/benchmarks.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let updated = match (doc.find(START), doc.find(END)) {
        (Some(s), Some(e)) => format!("{}{md}{}", &doc[..s], &doc[e + END.len()..]),
        _ => panic!("docs/benchmarks.md has no `make bench` markers"),
    };
    std::fs::write(&doc_path, updated).unwrap();
    println!("written: {}", doc_path.display());
}
