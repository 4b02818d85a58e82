//! The functions: packages and resources, routes, variables, reserved concurrency.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Method, Request};
use kpi_app::AppState;
use kpi_tests::app::TestApp;
use kpi_tests::template::{Function, NO_VALUE, branch, functions, list, root, template, text};
use tower::ServiceExt as _;
use yaml_rust2::Yaml;

#[test]
fn every_function_package_has_its_resource_and_back() {
    let packages: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "dev-server")
        .collect();
    let t = template();
    let fs = functions(&t);
    let resources: BTreeSet<String> = fs.iter().map(|f| f.binary.clone()).collect();
    assert_eq!(packages, resources, "functions/* against the template");
    // One build path: SAM runs `make build-<LogicalId>` in the repository root,
    // which reuses `make package`'s build and copies the function's binary.
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    assert!(
        makefile.contains("\nbuild-%: lambdas\n") && makefile.contains("\npackage: lambdas\n"),
        "the Makefile's build-% and package targets share the `lambdas` build"
    );
    for f in &fs {
        let r = &t["Resources"][f.logical.as_str()];
        assert_eq!(
            r["Metadata"]["BuildMethod"].as_str(),
            Some("makefile"),
            "{}",
            f.logical
        );
        assert_eq!(
            r["Properties"]["CodeUri"].as_str(),
            Some("."),
            "{}",
            f.logical
        );
    }
    let samconfig = std::fs::read_to_string(root().join("samconfig.toml")).unwrap();
    assert!(
        samconfig.contains("build_in_source = true"),
        "sam build runs make in the source tree"
    );
    assert_eq!(
        t["Globals"]["Function"]["Runtime"].as_str(),
        Some("provided.al2023")
    );
    assert_eq!(
        list(&t["Globals"]["Function"]["Architectures"])[0].as_str(),
        Some("arm64")
    );
}

/// Whether an HTTP API route pattern (`{param}` one segment, `{proxy+}` the
/// rest) matches a concrete path; `Some(specificity)` when it does (API
/// Gateway picks the most specific: literal segments first, greedy last).
fn matches(pattern: &str, path: &str) -> Option<(usize, usize)> {
    let pat: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let got: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut literal = 0;
    for (i, p) in pat.iter().enumerate() {
        if p.ends_with("+}") {
            return (got.len() > i).then_some((literal, 0));
        }
        let g = got.get(i)?;
        if p.starts_with('{') {
            continue;
        }
        if p != g {
            return None;
        }
        literal += 1;
    }
    (pat.len() == got.len()).then_some((literal, 1))
}

/// A template route matching a path: its specificity, function and route.
type RouteMatch<'a> = ((usize, usize), &'a Function, &'a (String, String));

/// `{param}` → a sample segment.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `router` has a route for `method path` (anything but the shared
/// "no such route" fallback or 405).
async fn serves(
    router: &axum::Router<AppState>,
    state: &AppState,
    method: &str,
    path: &str,
) -> bool {
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = router
        .clone()
        .with_state(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    !(status == 405 || (status == 404 && body.contains("no such route")))
}

#[tokio::test]
async fn every_route_reaches_the_function_that_serves_it_and_no_other() {
    let app = TestApp::spawn().await;
    let state = app.server.state.clone();
    let routers: Vec<(&str, axum::Router<AppState>)> = vec![
        ("api", kpi_app::http::api_function()),
        ("oauth", kpi_app::http::oauth_function()),
        ("ui", kpi_ui::ui_function()),
        ("webhook", kpi_app::http::webhook_function()),
    ];
    // Every route there is: the API document's, the document itself, the pages.
    let doc = kpi_tests::get_json(&kpi_tests::client(), app.url("/openapi.json")).await;
    let mut routes: Vec<(String, String)> = vec![("GET".into(), "/openapi.json".into())];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    for (method, path) in kpi_ui::ROUTES {
        routes.push(((*method).to_owned(), (*path).to_owned()));
    }

    let t = template();
    let fs = functions(&t);
    let mut used: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (method, path) in &routes {
        let sample = concrete(path);
        let mut serving = Vec::new();
        for (name, router) in &routers {
            if serves(router, &state, method, &sample).await {
                serving.push(*name);
            }
        }
        assert_eq!(serving.len(), 1, "{method} {path} is served by {serving:?}");
        // The template's route for it: the most specific match.
        let mut best: Option<RouteMatch<'_>> = None;
        for f in &fs {
            for route in &f.routes {
                if route.0 != "ANY" && &route.0 != method {
                    continue;
                }
                if let Some(rank) = matches(&route.1, &sample)
                    && best.as_ref().is_none_or(|(b, _, _)| rank > *b)
                {
                    best = Some((rank, f, route));
                }
            }
        }
        let (_, f, route) =
            best.unwrap_or_else(|| panic!("{method} {path}: no route in template.yaml"));
        assert_eq!(
            f.binary, serving[0],
            "{method} {path} is served by {} but routed to {} ({} {})",
            serving[0], f.binary, route.0, route.1
        );
        used.insert((f.binary.clone(), route.0.clone(), route.1.clone()));
    }
    // And the template routes nothing that no function serves.
    for f in &fs {
        for (method, path) in &f.routes {
            assert!(
                used.contains(&(f.binary.clone(), method.clone(), path.clone())),
                "template.yaml routes {method} {path} to {}, which serves nothing there",
                f.binary
            );
        }
    }
}

/// A stand-in for what CloudFormation puts in a variable (`!Ref`, `!GetAtt`,
/// `!Sub`), by what the name refers to.
fn resolved(t: &Yaml, raw: &str) -> String {
    let sample = |name: &str| -> String {
        let (logical, attr) = name.split_once('.').unwrap_or((name, ""));
        let r = &t["Resources"][logical];
        match (r["Type"].as_str(), attr) {
            (Some("AWS::SQS::Queue"), _) => {
                format!("https://sqs.eu-west-1.amazonaws.com/123456789012/{logical}")
            }
            (Some("AWS::KMS::Key"), _) => {
                "arn:aws:kms:eu-west-1:123456789012:key/0f6b4f3e-2c1a-4d57-9d0e-1b2c3d4e5f60".into()
            }
            (Some("AWS::DynamoDB::Table"), _) => "kpi-table".into(),
            (Some("AWS::SecretsManager::Secret"), _) => {
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kpi-AbCdEf".into()
            }
            (Some(_), _) => logical.to_owned(),
            (None, _) => match &t["Parameters"][logical] {
                Yaml::BadValue => name.to_owned(),
                p => match logical {
                    "PublicUrl" => "https://kpi.example.com".into(),
                    "DomainName" => "kpi.example.org".into(),
                    "CertificateArn" => {
                        "arn:aws:acm:eu-west-1:123456789012:certificate/0f6b4f3e".into()
                    }
                    "AuthJwksUrl" => "https://auth.example.com/.well-known/jwks.json".into(),
                    "AuthIssuer" => "https://auth.example.com/".into(),
                    "AuthAudience" => "kpi".into(),
                    "OidcIssuer" => "https://login.example.com/".into(),
                    "OidcClientId" => "kpi-pages".into(),
                    "CorsOrigins" => "https://app.example.com".into(),
                    other => text(&p["Default"])
                        .unwrap_or_else(|| panic!("no sample for parameter {other}")),
                },
            },
        }
    };
    if raw.contains("${") {
        let mut out = String::new();
        let mut rest = raw;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').unwrap() + start;
            out.push_str(&sample(&rest[start + 2..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    } else if t["Resources"][raw.split('.').next().unwrap()] != Yaml::BadValue
        || t["Parameters"][raw] != Yaml::BadValue
    {
        sample(raw)
    } else {
        raw.to_owned()
    }
}

/// Read outside the configuration: the log filter, and the secret's id
/// and the link key's (read first, to fetch the secrets the configuration
/// is read with).
const OTHERS: [&str; 3] = [
    "RUST_LOG",
    kpi_lambda::SECRET_ID_VARIABLE,
    kpi_lambda::LINK_KEY_SECRET_VARIABLE,
];

#[test]
fn each_function_starts_with_the_templates_variables() {
    let t = template();
    let fs = functions(&t);
    let http = kpi_app::providers::http_client().unwrap();
    // With and without the optional features (`!If` on a condition: the custom domain).
    for (f, with_options) in fs.iter().flat_map(|f| [(f, false), (f, true)]) {
        let env: BTreeMap<String, String> = f
            .variables
            .iter()
            .filter_map(|(k, v)| {
                let v = text(&branch(&t, v, with_options)).unwrap_or_default();
                (v != NO_VALUE).then(|| (k.clone(), resolved(&t, &v)))
            })
            .collect();
        if with_options {
            assert_eq!(
                env["KPI_PUBLIC_URL"], "https://kpi.example.org",
                "with a custom domain, the functions' public URL is the domain's"
            );
        }
        let read = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let lookup = {
            let env = env.clone();
            let read = read.clone();
            move |name: &str| {
                read.lock().unwrap().insert(name.to_owned());
                env.get(name).cloned()
            }
        };
        let configured = kpi_lambda::configure(lookup, &http).unwrap_or_else(|e| {
            panic!(
                "{} does not start{}: {}",
                f.binary,
                if with_options { " (custom domain)" } else { "" },
                e.log_chain()
            )
        });
        // Every variable the template sets is one the code reads.
        let read = read.lock().unwrap().clone();
        for name in env.keys() {
            assert!(
                read.contains(name) || OTHERS.contains(&name.as_str()),
                "{} sets {name}, which nothing reads",
                f.logical
            );
        }
        // A worker has its queue; the scheduler and the API every deployed worker's.
        let providers: BTreeSet<String> = configured
            .queue_urls
            .keys()
            .map(|p| p.as_str().to_owned())
            .collect();
        for worker in fs.iter().filter(|w| w.queues_work()) {
            let provider = worker.work_provider().unwrap_or_else(|| {
                panic!(
                    "{}: no KPI_QUEUE_URL_<PROVIDER> names its queue {:?}",
                    worker.logical, worker.queues
                )
            });
            assert!(
                providers.contains(&provider),
                "{}: no queue URL for the {provider} worker ({})",
                f.logical,
                worker.logical
            );
        }
    }
}

/// Functions anyone on the Internet can reach without a token have a reserved
/// concurrency (a parameter; 0 for none), so a flood cannot starve the others.
#[test]
fn public_functions_have_a_reserved_concurrency() {
    let t = template();
    let r = &t["Resources"];
    assert_eq!(
        t["Parameters"]["PublicFunctionConcurrency"]["MinValue"].as_i64(),
        Some(0)
    );
    for f in functions(&t) {
        let reserved = &r[f.logical.as_str()]["Properties"]["ReservedConcurrentExecutions"];
        if ["oauth", "webhook"].contains(&f.binary.as_str()) {
            assert_eq!(
                text(&branch(&t, reserved, true)).as_deref(),
                Some("PublicFunctionConcurrency"),
                "{}",
                f.logical
            );
            assert_eq!(
                text(&branch(&t, reserved, false)).as_deref(),
                Some("AWS::NoValue"),
                "{}",
                f.logical
            );
        }
    }
}
