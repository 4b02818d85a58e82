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
/// Sync overhead ≤ 10 % above the latency floor.
const SYNC_RATIO: f64 = 1.5;
/// Queue batch calls of the fan-out: ≤ 1,000 for 10,000 due integrations.
const DUE_PER_BATCH_CALL: f64 = 10.0;

fn read_object(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn calls_list(calls: &Value) -> String {
    calls
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(op, n)| format!("`{op}` {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn sync_sections(md: &mut String, results: &Path) {
    let Some(sync) = read_object(&results.join("sync.json")) else {
        return;
    };
    let o = &sync["overhead"];
    let ratio = o["ratio"].as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(md, "### Sync overhead (sandbox with injected latency)\n");
    let _ = writeln!(
        md,
        "{} Meta Ads integrations synced by {} concurrent worker lanes (the embedded \
         store, queue and key, in one process) against the sandbox answering every \
         call {} ms late. The floor makes the same provider calls (as many per \
         integration as its sync made, one after another, each the first sync's \
         90-day insights request with its answer read whole) from the same number \
         of lanes and does nothing else. Budget: ≤ {}× the floor.\n",
        o["integrations"], o["lanes"], o["latency_ms"], SYNC_RATIO
    );
    let _ = writeln!(
        md,
        "| syncs succeeded | provider calls | retries | workers | latency floor | × floor | budget |\n|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| {} | {} | {} | {:.0} ms | {:.0} ms | {ratio:.2} | {} |\n",
        o["succeeded"],
        o["provider_calls"],
        o["retries"],
        o["worker_ms"].as_f64().unwrap_or(f64::NAN),
        o["floor_ms"].as_f64().unwrap_or(f64::NAN),
        verdict(ratio <= SYNC_RATIO)
    );

    let k = &sync["kms"];
    let _ = writeln!(md, "### KMS calls per 1,000 syncs\n");
    let _ = writeln!(
        md,
        "{} syncs of {} Meta Ads integrations (ten rounds) on DynamoDB, SQS and KMS \
         (`moto_server`), every AWS call counted on the wire by a recording proxy. \
         The worker has its own data-key cache (five minutes), as a Lambda has: \
         decrypts are bounded by the integrations, not the syncs.\n",
        k["syncs"], k["integrations"]
    );
    let _ = writeln!(md, "| phase | KMS calls | all AWS calls |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| connect {} integrations | {} | — |",
        k["integrations"],
        calls_list(&k["connect_kms_calls"])
    );
    let _ = writeln!(
        md,
        "| {} syncs | {} | {} |\n",
        k["syncs"],
        calls_list(&k["sync_kms_calls"]),
        calls_list(&k["sync_calls"])
    );
}

fn outage_section(md: &mut String, results: &Path) {
    let Some(o) = read_object(&results.join("outage.json")) else {
        return;
    };
    let _ = writeln!(
        md,
        "### From the end of an outage to the first successful sync\n"
    );
    let _ = writeln!(
        md,
        "{} integrations with the default settings (a scheduler tick every 5 minutes, \
         the 6-hour sync interval spread evenly, the worker's retry policy, 5 receives \
         before the dead-letter queue, the next sync at most 30 minutes after a job the \
         outage outlasted), the provider failing with 5xx for the whole outage. Simulated \
         clock in 10 s steps; the scheduler, workers and dead-letter handler are the real \
         ones on SQLite. Minutes from the outage's end to each hit integration's first \
         successful sync; nobody acts. Without the 30-minute resync a hit integration \
         waited for its next regular sync, up to the whole 6-hour interval.\n",
        o["integrations"]
    );
    let _ = writeln!(
        md,
        "| outage | integrations hit | synced again | jobs dead | failed attempts | min | median | p95 | max |\n|---|---|---|---|---|---|---|---|---|"
    );
    for r in o["runs"].as_array().into_iter().flatten() {
        let m = &r["minutes_to_first_success"];
        let f = |k: &str| format!("{:.1} min", m[k].as_f64().unwrap_or(f64::NAN));
        let _ = writeln!(
            md,
            "| {} min | {} | {} | {} | {} | {} | {} | {} | {} |",
            r["outage_minutes"],
            r["integrations_hit"],
            r["recovered"],
            r["jobs_dead"],
            r["failed_attempts"],
            f("min"),
            f("median"),
            f("p95"),
            f("max")
        );
    }
    let _ = writeln!(md);
}

fn fanout_section(md: &mut String, results: &Path) {
    let Some(f) = read_object(&results.join("fanout.json")) else {
        return;
    };
    let _ = writeln!(md, "### Scheduler fan-out\n");
    let _ = writeln!(
        md,
        "Due integrations, the scheduler run until every one has its job queued (a \
         run queues at most 5,000; the rest stay due for the next tick). Budget: at \
         most one queue batch call per {DUE_PER_BATCH_CALL:.0} due integrations (1,000 \
         for 10,000), no scan. DynamoDB's calls are counted on the wire, through a \
         proxy that answers each {} ms late as a region would; the scheduler claims \
         a page's due integrations 16 at a time (each claim a `GetItem` and a \
         `TransactWriteItems`), so those round trips overlap. moto applies \
         DynamoDB requests one at a time.\n",
        f["dynamodb"]["aws_latency_ms"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        md,
        "| backend | due | runs | jobs queued | queue batch calls | budget | store calls | scan | time |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (name, key) in [
        ("SQLite + embedded queue", "sqlite"),
        ("DynamoDB + SQS (moto, delayed)", "dynamodb"),
    ] {
        let b = &f[key];
        if b.is_null() {
            continue;
        }
        let due = b["due"].as_f64().unwrap_or(0.0);
        let batches = b["batch_calls"].as_f64().unwrap_or(f64::NAN);
        let store = if key == "sqlite" {
            format!(
                "due query: {}",
                b["due_query_plan"]
                    .as_array()
                    .map(|p| p
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; "))
                    .unwrap_or_default()
            )
        } else {
            calls_list(&b["aws_calls"])
        };
        let _ = writeln!(
            md,
            "| {name} | {due:.0} | {} | {} | {batches:.0} | {} | {store} | {} | {:.1} s |",
            b["runs"].as_array().map(Vec::len).unwrap_or(0),
            b["jobs_created"],
            verdict(batches <= due / DUE_PER_BATCH_CALL),
            if b["scan"].as_bool() == Some(false) {
                "none"
            } else {
                "**yes**"
            },
            b["seconds"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let _ = writeln!(md);
}

fn bloat_section(md: &mut String, results: &Path) {
    let Some(b) = read_object(&results.join("bloat.json")) else {
        return;
    };
    let file = b["file-size"].as_f64().unwrap_or(f64::NAN);
    let text = b["text-section-size"].as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(md, "### What the largest function holds (`api`)\n");
    let _ = writeln!(
        md,
        "`cargo bloat --crates` on `api` built with the release profile, symbols kept \
         (x86-64): binary {:.1} MB, of it code (`.text`) {:.1} MB. The code's largest crates:\n",
        file / 1e6,
        text / 1e6
    );
    let _ = writeln!(md, "| crate | code | share of code |\n|---|---|---|");
    for c in b["crates"].as_array().into_iter().flatten().take(15) {
        let size = c["size"].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            md,
            "| {} | {:.0} KB | {:.1} % |",
            c["name"].as_str().unwrap_or("?"),
            size / 1e3,
            size / text * 100.0
        );
    }
    let _ = writeln!(md);
}

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
        // Start-up: the first answer less the same event's warm answer.
        let startup = |r: &Value| {
            r["first_response_ms"].as_f64().unwrap_or(f64::NAN)
                - r["warm_response_ms"].as_f64().unwrap_or(f64::NAN)
        };
        let floor = rows
            .iter()
            .find(|r| r["function"] == "hello")
            .map(startup)
            .unwrap_or(f64::NAN);
        let latency = rows[0]["aws_latency_ms"].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            md,
            "### Cold start (local Runtime API, AWS on moto {latency:.0} ms away)\n"
        );
        let _ = writeln!(
            md,
            "Each function started {} times on its sample event from `events/` \
             (after one unmeasured start), then, half a second later, given the same \
             event again, warm; peak RSS after both. Its \
             real start-up: configuration, the Secrets Manager secret, the AWS clients, \
             against `moto_server` behind a proxy that answers every AWS call \
             {latency:.0} ms late, as a region's services do. Medians. The cold start is \
             the first answer less the warm one: the work the event itself needs (a \
             tick's queries, a job's lookup) is not start-up, a secret the event waits \
             for is. The floor is `hello`, the smallest `lambda_runtime` function, \
             built in the same run. All of them are built as the Lambda package is, \
             position-dependent, for this machine's x86_64. Budgets: cold start ≤ {COLD_RATIO}× the floor's, \
             peak RSS ≤ 16 MiB.\n",
            rows[0]["runs"]
        );
        let _ = writeln!(
            md,
            "| function | exec → first poll | exec → first response | warm response | cold start | × floor | peak RSS | budget |\n|---|---|---|---|---|---|---|---|"
        );
        let mut chart = Vec::new();
        for r in &rows {
            let name = r["function"].as_str().unwrap_or("?");
            let poll = r["first_poll_ms"].as_f64().unwrap_or(f64::NAN);
            let first = r["first_response_ms"].as_f64().unwrap_or(f64::NAN);
            let warm = r["warm_response_ms"].as_f64().unwrap_or(f64::NAN);
            let rss = r["peak_rss_kib"].as_f64().unwrap_or(f64::NAN);
            if first.is_nan() || warm.is_nan() {
                let _ = writeln!(
                    md,
                    "| {name} | — | no answer ({}) | — | — | — | — | **not measured** |",
                    r["answer"].as_str().unwrap_or("")
                );
                continue;
            }
            let cold = first - warm;
            let ratio = cold / floor;
            let ok = ratio <= COLD_RATIO && rss <= RSS_KIB;
            let label = if name == "hello" {
                "hello (floor)"
            } else {
                name
            };
            let _ = writeln!(
                md,
                "| {label} | {poll:.1} ms | {first:.1} ms | {warm:.1} ms | {cold:.1} ms | {ratio:.2} | {:.1} MiB | {} |",
                rss / 1024.0,
                if name == "hello" { "—" } else { verdict(ok) }
            );
            chart.push((label.to_owned(), cold));
        }
        std::fs::write(
            images.join("bench-coldstart.svg"),
            bars_svg(
                "cold start: first answer less warm answer (ms)",
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
    sync_sections(&mut md, &results);
    fanout_section(&mut md, &results);
    outage_section(&mut md, &results);
    bloat_section(&mut md, &results);
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
