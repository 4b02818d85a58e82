//! `template.yaml` checked against the code: every function package has its
//! resource and every resource its package; every route the routers serve
//! reaches the function that serves it and no other, and the template routes
//! nothing that no function serves; each function starts with the template's
//! variables; every queue a worker consumes has a dead-letter queue and a
//! visibility timeout of at least six times the consumer's timeout; and each
//! role allows the AWS calls its function's adapters make.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Method, Request};
use kpi_app::AppState;
use kpi_tests::app::TestApp;
use kpi_tests::template::{
    Function, allows, entries, functions, granted, list, root, template, text,
};
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
    for f in &fs {
        let r = &t["Resources"][f.logical.as_str()];
        assert_eq!(
            r["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{}",
            f.logical
        );
    }
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
        ("meta-webhook", kpi_app::http::meta_webhook_function()),
        ("resend-webhook", kpi_app::http::resend_webhook_function()),
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
                p => text(&p["Default"]).unwrap_or_else(|| match logical {
                    "PublicUrl" => "https://kpi.example.com".into(),
                    "AuthJwksUrl" => "https://auth.example.com/.well-known/jwks.json".into(),
                    "AuthIssuer" => "https://auth.example.com/".into(),
                    "AuthAudience" => "kpi".into(),
                    other => panic!("no sample for parameter {other}"),
                }),
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
/// (read first, to fetch the secret the configuration is read with).
const OTHERS: [&str; 2] = ["RUST_LOG", kpi_lambda::SECRET_ID_VARIABLE];

#[test]
fn each_function_starts_with_the_templates_variables() {
    let t = template();
    let fs = functions(&t);
    let workers: BTreeMap<String, String> = fs
        .iter()
        .filter_map(|f| {
            f.binary
                .strip_prefix("sync-")
                .filter(|p| !["scheduler", "dlq"].contains(p))
                .map(|p| (f.binary.clone(), p.to_owned()))
        })
        .collect();
    let http = kpi_app::providers::http_client().unwrap();
    for f in &fs {
        let env: BTreeMap<String, String> = f
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), resolved(&t, v)))
            .collect();
        let read = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let lookup = {
            let env = env.clone();
            let read = read.clone();
            move |name: &str| {
                read.lock().unwrap().insert(name.to_owned());
                env.get(name).cloned()
            }
        };
        let configured = kpi_lambda::configure(lookup, &http)
            .unwrap_or_else(|e| panic!("{} does not start: {}", f.binary, e.log_chain()));
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
            .map(|p| p.as_str().replace('_', "-"))
            .collect();
        for provider in workers.values() {
            let id = match provider.as_str() {
                "meta" => "meta-ads",
                other => other,
            };
            assert!(
                providers.contains(id),
                "{}: no queue URL for the {provider} worker",
                f.logical
            );
        }
    }
}

#[test]
fn every_consumed_queue_has_a_dead_letter_queue_and_room_for_retries() {
    let t = template();
    for f in functions(&t) {
        for queue in &f.queues {
            let q = &t["Resources"][queue.as_str()];
            assert_eq!(q["Type"].as_str(), Some("AWS::SQS::Queue"), "{queue}");
            let visibility = match &q["Properties"]["VisibilityTimeout"] {
                Yaml::Integer(i) => *i,
                Yaml::String(param) => t["Parameters"][param.as_str()]["MinValue"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("{queue}: parameter {param} without MinValue")),
                other => panic!("{queue}: VisibilityTimeout {other:?}"),
            };
            assert!(
                visibility >= 6 * f.timeout,
                "{queue}: visibility {visibility} s < 6 × {} s ({})",
                f.timeout,
                f.logical
            );
            let is_dead_letter_queue = f.binary == "sync-dlq";
            if !is_dead_letter_queue {
                let target = q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{queue} has no dead-letter queue"));
                let dlq = target.trim_end_matches(".Arn");
                assert_eq!(
                    t["Resources"][dlq]["Type"].as_str(),
                    Some("AWS::SQS::Queue"),
                    "{queue} → {dlq}"
                );
            }
        }
    }
}

/// The AWS operations an adapter's source calls on its SDK client
/// (`.get_item()` → `GetItem`), read from the adapter's files.
fn operations(files: &[&str], known: &[&str]) -> BTreeSet<String> {
    let mut source = String::new();
    for f in files {
        source.push_str(&std::fs::read_to_string(root().join(f)).unwrap());
    }
    known
        .iter()
        .filter(|op| source.contains(&format!(".{}()", snake(op))))
        .map(|op| (*op).to_owned())
        .collect()
}

fn snake(pascal: &str) -> String {
    let mut out = String::new();
    for (i, c) in pascal.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[test]
fn each_role_allows_the_calls_its_adapters_make() {
    let t = template();
    let store = operations(
        &[
            "shared/aws/src/dynamo/mod.rs",
            "shared/aws/src/dynamo/items.rs",
        ],
        &[
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "Scan",
            "BatchGetItem",
            "BatchWriteItem",
            "TransactWriteItems",
            "TransactGetItems",
        ],
    );
    assert!(
        store.contains("Query") && store.contains("PutItem"),
        "{store:?}"
    );
    assert!(!store.contains("Scan"), "the store never scans");
    let reads: BTreeSet<String> = store
        .iter()
        .filter(|op| {
            ["GetItem", "Query", "BatchGetItem", "TransactGetItems"].contains(&op.as_str())
        })
        .cloned()
        .collect();
    let queue = operations(
        &["shared/aws/src/sqs.rs"],
        &[
            "SendMessage",
            "SendMessageBatch",
            "ReceiveMessage",
            "DeleteMessage",
            "DeleteMessageBatch",
            "ChangeMessageVisibility",
            "GetQueueAttributes",
        ],
    );
    let kms = operations(
        &["shared/aws/src/kms.rs"],
        &["GenerateDataKey", "Decrypt", "Encrypt"],
    );
    let secrets = operations(&["shared/aws/src/secrets.rs"], &["GetSecretValue"]);
    assert_eq!(secrets.len(), 1);

    // What each function does with the adapters it wires.
    let sends = ["SendMessage", "SendMessageBatch"];
    for f in functions(&t) {
        let g = granted(&f);
        let mut need: BTreeSet<String> = BTreeSet::new();
        need.extend(secrets.iter().map(|op| format!("secretsmanager:{op}")));
        // The pages only read; every other function writes jobs, state or records.
        let store_ops = if f.binary == "ui" { &reads } else { &store };
        for op in store_ops {
            // IAM checks a transaction's parts, not the transaction.
            match op.as_str() {
                "TransactWriteItems" => need.extend(
                    ["ConditionCheckItem", "PutItem", "UpdateItem", "DeleteItem"]
                        .map(|a| format!("dynamodb:{a}")),
                ),
                "TransactGetItems" => {
                    need.insert("dynamodb:GetItem".into());
                }
                other => {
                    need.insert(format!("dynamodb:{other}"));
                }
            }
        }
        // Credentials: sealed where connections are made (and by the workers,
        // which seal a refreshed token again), opened where providers are called.
        let seals = ["api", "oauth"].contains(&f.binary.as_str()) || f.queues_work();
        if seals {
            need.insert("kms:GenerateDataKey".into());
        }
        if !["ui", "meta-webhook", "resend-webhook"].contains(&f.binary.as_str()) {
            need.insert("kms:Decrypt".into());
        }
        // Jobs are sent by the API (manual syncs, retries), the scheduler and the
        // Meta webhook (and the dead-letter handler, which redrives).
        if ["api", "sync-scheduler", "meta-webhook"].contains(&f.binary.as_str()) {
            need.extend(
                queue
                    .iter()
                    .filter(|op| sends.contains(&op.as_str()))
                    .map(|op| format!("sqs:{op}")),
            );
        }
        if ["api", "ui"].contains(&f.binary.as_str()) {
            need.insert("sqs:GetQueueAttributes".into());
        }
        for action in &need {
            assert!(
                allows(&g, action),
                "{} ({}) needs {action}; its role allows {g:?}",
                f.logical,
                f.binary
            );
        }
        // Least privilege: only the functions that seal credentials may make
        // data keys, every KMS grant is conditioned (the vault's encryption
        // context, or Secrets Manager as the caller), and the pages write nothing.
        for st in list(&f.policies)
            .iter()
            .flat_map(|p| list(&p["Statement"]))
            .filter(|st| {
                list(&st["Action"])
                    .iter()
                    .any(|a| a.as_str().is_some_and(|a| a.starts_with("kms:")))
            })
        {
            let condition = format!("{:?}", st["Condition"]);
            assert!(
                condition.contains("kms:EncryptionContextKeys")
                    || condition.contains("kms:ViaService"),
                "{}: a KMS grant without a condition: {st:?}",
                f.logical
            );
        }
        if !seals {
            assert!(
                !allows(&g, "kms:GenerateDataKey"),
                "{} may make data keys",
                f.logical
            );
        }
        if f.binary == "ui" {
            for op in ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"] {
                assert!(!allows(&g, &format!("dynamodb:{op}")), "ui may {op}");
            }
        }
    }
    assert!(
        kms.contains("GenerateDataKey") && kms.contains("Decrypt"),
        "{kms:?}"
    );
}

#[test]
fn state_is_kept_safe_and_every_failure_has_an_alarm() {
    let t = template();
    let r = &t["Resources"];
    let table = &r["Table"]["Properties"];
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(table["SSESpecification"]["SSEType"].as_str(), Some("KMS"));
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(table["DeletionProtectionEnabled"].as_bool(), Some(true));
    let key = &r["CredentialsKey"]["Properties"];
    assert_eq!(key["EnableKeyRotation"].as_bool(), Some(true));
    assert!(!list(&key["KeyPolicy"]["Statement"]).is_empty());
    // The schedule retries and keeps what still failed.
    let tick = entries(&r["SyncSchedulerFunction"]["Properties"]["Events"])
        .into_iter()
        .find(|(_, e)| e["Type"].as_str() == Some("ScheduleV2"))
        .expect("a ScheduleV2 event")
        .1;
    assert!(tick["Properties"]["RetryPolicy"]["MaximumRetryAttempts"].as_i64() > Some(0));
    let dlq = tick["Properties"]["DeadLetterConfig"]["QueueLogicalId"]
        .as_str()
        .expect("the schedule's dead-letter queue");
    // Every dead-letter queue has an alarm on its depth.
    let alarmed: Vec<String> = entries(r)
        .into_iter()
        .filter(|(_, a)| a["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .flat_map(|(_, a)| list(&a["Properties"]["Dimensions"]))
        .filter_map(|d| {
            d["Value"]
                .as_str()
                .map(|v| v.trim_end_matches(".QueueName").to_owned())
        })
        .collect();
    let mut dead_letter_queues: Vec<String> = entries(r)
        .into_iter()
        .filter_map(|(_, q)| {
            q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
                .as_str()
                .map(|a| a.trim_end_matches(".Arn").to_owned())
        })
        .collect();
    dead_letter_queues.push(dlq.to_owned());
    for q in &dead_letter_queues {
        assert!(alarmed.contains(q), "no alarm on {q}");
    }
    for alarm in [
        "WorkerErrorsAlarm",
        "ThrottlesAlarm",
        "WebhookSignatureFailuresAlarm",
    ] {
        assert_eq!(
            r[alarm]["Type"].as_str(),
            Some("AWS::CloudWatch::Alarm"),
            "{alarm}"
        );
    }
    assert_eq!(
        r["Dashboard"]["Type"].as_str(),
        Some("AWS::CloudWatch::Dashboard")
    );
    // What an operator pastes into Google's and Meta's consoles comes out of the stack.
    let outputs: Vec<String> = entries(&t["Outputs"])
        .into_iter()
        .filter_map(|(_, o)| text(&o["Value"]))
        .collect();
    for path in [
        "/v1/oauth/ga4/callback",
        "/v1/oauth/meta_ads/callback",
        "/v1/webhooks/meta",
        "/v1/webhooks/resend",
    ] {
        assert!(
            outputs.iter().any(|o| o.ends_with(path)),
            "no output for {path}"
        );
    }
}
