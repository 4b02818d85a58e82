//! `template.yaml` checked against the code: every function package has its
//! resource and every resource its package; every route the routers serve
//! reaches the function that serves it and no other, and the template routes
//! nothing that no function serves; each function starts with the template's
//! variables; every queue a worker consumes has a dead-letter queue and a
//! visibility timeout of at least six times the consumer's timeout; each role
//! allows the AWS calls its function's adapters make, and uses the table's key
//! only through DynamoDB; every function logs to a group with a retention;
//! every failure has an alarm, with or without a topic; and nothing that
//! outlives a stack, or whose name stays taken after a delete, has a fixed name.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Method, Request};
use kpi_app::AppState;
use kpi_tests::app::TestApp;
use kpi_tests::template::{
    Function, NO_VALUE, allows, branch, entries, functions, granted, granted_on, list, logical_id,
    root, statements, template, text,
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
                // The scheduler sends a waiting job again only once the queue
                // no longer holds its message: it must know the retention.
                assert_eq!(
                    q["Properties"]["MessageRetentionPeriod"].as_i64(),
                    Some(kpi_core::ports::queue::WORK_RETENTION.num_seconds()),
                    "{queue}: retention the scheduler counts on"
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
            "shared/aws/src/dynamo/ephemeral.rs",
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
    // Sessions and sign-in attempts: items whose partition key is EPHEMERAL#….
    let ephemeral_source = "shared/aws/src/dynamo/ephemeral.rs";
    assert!(
        std::fs::read_to_string(root().join(ephemeral_source))
            .unwrap()
            .contains("format!(\"EPHEMERAL#{key}\")"),
        "the short-lived records' partition key changed: update the pages' role"
    );
    let ephemeral = operations(
        &[ephemeral_source],
        &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"],
    );
    assert!(ephemeral.contains("PutItem"), "{ephemeral:?}");
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
        // The pages read, and write only their sessions and sign-in attempts
        // (short-lived records); every other function writes jobs, state or records.
        let pages_ops: BTreeSet<String> = reads.union(&ephemeral).cloned().collect();
        let store_ops = if f.binary == "ui" { &pages_ops } else { &store };
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
        // Both with the credentials key, under the vault's encryption context.
        let seals = ["api", "oauth"].contains(&f.binary.as_str()) || f.queues_work();
        let mut vault_need: BTreeSet<String> = BTreeSet::new();
        if seals {
            vault_need.insert("kms:GenerateDataKey".into());
        }
        if f.binary != "ui" {
            vault_need.insert("kms:Decrypt".into());
        }
        let vault_granted: BTreeSet<String> = statements(&f)
            .iter()
            .filter(|st| {
                list(&st["Resource"])
                    .iter()
                    .any(|r| logical_id(r).as_deref() == Some("CredentialsKey"))
                    && format!("{:?}", st["Condition"]).contains("kms:EncryptionContextKeys")
            })
            .flat_map(|st| list(&st["Action"]))
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        for action in &vault_need {
            assert!(
                allows(&vault_granted, action),
                "{} ({}) needs {action} on CredentialsKey with the vault's encryption context; it has {vault_granted:?}",
                f.logical,
                f.binary
            );
        }
        // Jobs are sent by the API (manual syncs, retries), the scheduler and the
        // webhooks (and the dead-letter handler, which redrives).
        if ["api", "sync-scheduler", "webhook"].contains(&f.binary.as_str()) {
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
                !allows(&granted_on(&f, "CredentialsKey"), "kms:GenerateDataKey"),
                "{} may make data keys",
                f.logical
            );
        }
        if f.binary == "ui" {
            for op in ["UpdateItem", "BatchWriteItem"] {
                assert!(!allows(&g, &format!("dynamodb:{op}")), "ui may {op}");
            }
            // Its writes reach only the short-lived records' partition keys.
            for st in statements(&f).iter().filter(|st| {
                list(&st["Action"]).iter().any(|a| {
                    ["dynamodb:PutItem", "dynamodb:DeleteItem"].contains(&a.as_str().unwrap_or(""))
                })
            }) {
                let keys: Vec<String> =
                    list(&st["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
                        .iter()
                        .map(|k| k.as_str().unwrap_or("?").to_owned())
                        .collect();
                assert_eq!(
                    keys,
                    ["EPHEMERAL#*"],
                    "ui writes beyond its sessions: {st:?}"
                );
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
    let dlq = logical_id(&tick["Properties"]["DeadLetterConfig"]["Arn"])
        .expect("the schedule's dead-letter queue");
    assert_eq!(
        r[dlq.as_str()]["Type"].as_str(),
        Some("AWS::SQS::Queue"),
        "{dlq}"
    );
    // Scheduler invokes the function asynchronously: what fails inside it after
    // Lambda's retries goes to the same queue.
    let scheduler = &r["SyncSchedulerFunction"]["Properties"];
    assert_eq!(
        logical_id(&scheduler["DeadLetterQueue"]["TargetArn"]).as_deref(),
        Some(dlq.as_str())
    );
    assert!(scheduler["EventInvokeConfig"]["MaximumRetryAttempts"].as_i64() > Some(0));
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
    dead_letter_queues.push(dlq.clone());
    for q in &dead_letter_queues {
        assert!(alarmed.contains(q), "no alarm on {q}");
    }
    for alarm in [
        "WorkerErrorsAlarm",
        "HttpFunctionErrorsAlarm",
        "Api5xxAlarm",
        "SyncQueueAgeAlarm",
        "SyncFailureRateAlarm",
        "HttpThrottlesAlarm",
        "BackgroundThrottlesAlarm",
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
    // (`!Sub` as text, or as [text, variables].)
    let outputs: Vec<String> = entries(&t["Outputs"])
        .into_iter()
        .filter_map(|(_, o)| text(&o["Value"]).or_else(|| text(&list(&o["Value"])[0])))
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

/// The table has a key of its own, and each role may use it exactly as
/// DynamoDB does on its behalf: through DynamoDB only, decrypting for reads and
/// also encrypting for writes. The credentials key is never used through DynamoDB.
#[test]
fn the_table_key_is_used_only_through_dynamodb() {
    let t = template();
    let r = &t["Resources"];
    let sse = &r["Table"]["Properties"]["SSESpecification"];
    assert_eq!(sse["KMSMasterKeyId"].as_str(), Some("TableKey"));
    assert_eq!(r["TableKey"]["Type"].as_str(), Some("AWS::KMS::Key"));
    assert_eq!(
        r["TableKey"]["Properties"]["EnableKeyRotation"].as_bool(),
        Some(true)
    );
    let alias = entries(r).into_iter().find(|(_, a)| {
        a["Type"].as_str() == Some("AWS::KMS::Alias")
            && a["Properties"]["TargetKeyId"].as_str() == Some("TableKey")
    });
    assert!(alias.is_some(), "TableKey has an alias");
    let crud = [
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
    ];
    for f in functions(&t) {
        let templates: Vec<String> = list(&f.policies)
            .iter()
            .flat_map(entries)
            .map(|(name, _)| name)
            .collect();
        // Writers: the CRUD template, or a statement of their own that writes items.
        let writes = templates.iter().any(|n| n == "DynamoDBCrudPolicy")
            || statements(&f).iter().any(|st| {
                list(&st["Action"]).iter().any(|a| {
                    a.as_str().is_some_and(|a| {
                        [
                            "dynamodb:PutItem",
                            "dynamodb:DeleteItem",
                            "dynamodb:UpdateItem",
                        ]
                        .contains(&a)
                    })
                })
            });
        let expected: &[&str] = if writes {
            &crud
        } else if templates.iter().any(|n| n == "DynamoDBReadPolicy") {
            &["kms:Decrypt"]
        } else {
            &[]
        };
        let table_key: Vec<Yaml> = statements(&f)
            .into_iter()
            .filter(|st| {
                list(&st["Resource"])
                    .iter()
                    .any(|r| logical_id(r).as_deref() == Some("TableKey"))
            })
            .collect();
        if expected.is_empty() {
            assert!(
                table_key.is_empty(),
                "{} uses TableKey without the table",
                f.logical
            );
            continue;
        }
        assert_eq!(table_key.len(), 1, "{}: one TableKey statement", f.logical);
        let st = &table_key[0];
        let actions: Vec<String> = list(&st["Action"])
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        assert_eq!(actions, expected, "{}", f.logical);
        assert_eq!(list(&st["Resource"]).len(), 1, "{}", f.logical);
        assert_eq!(
            st["Condition"]["StringEquals"]["kms:ViaService"].as_str(),
            Some("dynamodb.${AWS::Region}.amazonaws.com"),
            "{}: TableKey only through DynamoDB",
            f.logical
        );
        for st in statements(&f).iter().filter(|st| {
            list(&st["Resource"])
                .iter()
                .any(|r| logical_id(r).as_deref() == Some("CredentialsKey"))
        }) {
            assert!(
                !format!("{:?}", st["Condition"]).contains("dynamodb."),
                "{}: CredentialsKey through DynamoDB",
                f.logical
            );
        }
    }
}

/// Every function logs to a log group of its own with a retention, and the
/// API's access log has one too, with the fields the runbooks query.
#[test]
fn every_function_logs_to_its_own_group_with_a_retention() {
    let t = template();
    let r = &t["Resources"];
    let retained = |group: &str| {
        let g = &r[group];
        assert_eq!(g["Type"].as_str(), Some("AWS::Logs::LogGroup"), "{group}");
        assert!(
            g["Properties"]["RetentionInDays"] != Yaml::BadValue,
            "{group} keeps logs forever"
        );
        assert!(
            g["Properties"]["LogGroupName"] == Yaml::BadValue,
            "{group} has a fixed name"
        );
    };
    let mut groups = BTreeSet::new();
    for f in functions(&t) {
        let config = &r[f.logical.as_str()]["Properties"]["LoggingConfig"];
        let group = config["LogGroup"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no LoggingConfig.LogGroup", f.logical));
        retained(group);
        assert!(groups.insert(group.to_owned()), "{group} is shared");
        // The functions print JSON lines themselves (tracing, EMF); Lambda's
        // text format keeps them as they are.
        assert_eq!(config["LogFormat"].as_str(), Some("Text"), "{}", f.logical);
    }
    let access = &r["HttpApi"]["Properties"]["AccessLogSettings"];
    let group = logical_id(&access["DestinationArn"]).expect("the API's access log");
    retained(&group);
    let format = access["Format"].as_str().unwrap();
    let line: serde_json::Value = serde_json::from_str(format)
        .unwrap_or_else(|e| panic!("the access log format is not JSON: {e}"));
    for (field, variable) in [
        ("requestId", "$context.requestId"),
        ("routeKey", "$context.routeKey"),
        ("status", "$context.status"),
        ("integrationError", "$context.integrationErrorMessage"),
    ] {
        assert_eq!(
            line[field].as_str(),
            Some(variable),
            "access log field {field}"
        );
    }
}

/// Every alarm exists whether or not an alarm topic is configured (it then
/// only changes state); each covers all of what it watches; and the metrics
/// of the app's own namespace are ones the code emits.
#[test]
fn every_failure_has_an_alarm_with_or_without_a_topic() {
    let t = template();
    let r = &t["Resources"];
    let fs = functions(&t);
    let alarms: Vec<(String, Yaml)> = entries(r)
        .into_iter()
        .filter(|(_, a)| a["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .collect();
    let metrics_source =
        std::fs::read_to_string(root().join("shared/sync/src/metrics.rs")).unwrap();
    assert!(metrics_source.contains("pub const NAMESPACE: &str = \"KpiIntegrations\";"));
    // (metric name, dimension values) of every metric an alarm reads.
    let watched = |a: &Yaml| -> Vec<(String, String, Vec<String>)> {
        let p = &a["Properties"];
        let mut out = Vec::new();
        let one = |m: &Yaml| {
            (
                m["Namespace"].as_str().unwrap_or_default().to_owned(),
                text(&m["MetricName"]).unwrap_or_default(),
                list(&m["Dimensions"])
                    .iter()
                    .filter_map(|d| {
                        d["Value"]
                            .as_str()
                            .map(|v| v.trim_end_matches(".QueueName").to_owned())
                    })
                    .collect::<Vec<_>>(),
            )
        };
        if p["MetricName"] != Yaml::BadValue {
            out.push(one(p));
        }
        for m in list(&p["Metrics"]) {
            if m["MetricStat"] != Yaml::BadValue {
                out.push(one(&m["MetricStat"]["Metric"]));
            }
        }
        out
    };
    for (name, a) in &alarms {
        assert!(
            a["Condition"] == Yaml::BadValue,
            "{name} only exists with a topic"
        );
        let actions = list(&a["Properties"]["AlarmActions"]);
        assert_eq!(
            actions.first().and_then(|c| c.as_str()),
            Some("HasAlarmTopic"),
            "{name}: AlarmActions is !If [HasAlarmTopic, …, !Ref AWS::NoValue]"
        );
        assert_eq!(
            actions.get(2).and_then(|c| c.as_str()),
            Some("AWS::NoValue"),
            "{name}"
        );
        assert!(
            list(&a["Properties"]["Metrics"]).len() <= 10,
            "{name}: at most 10 metrics"
        );
        for (namespace, metric, _) in watched(a) {
            if namespace == "KpiIntegrations" {
                assert!(
                    metrics_source.contains(&format!("\"{metric}\"")),
                    "{name} reads {metric}, which the code does not emit"
                );
            }
        }
    }
    let covered = |metric: &str| -> BTreeSet<String> {
        alarms
            .iter()
            .flat_map(|(_, a)| watched(a))
            .filter(|(_, m, _)| m == metric)
            .flat_map(|(_, _, d)| d)
            .collect()
    };
    let all: BTreeSet<String> = fs.iter().map(|f| f.logical.clone()).collect();
    assert_eq!(covered("Throttles"), all, "every function's throttles");
    let http: BTreeSet<String> = fs
        .iter()
        .filter(|f| !f.routes.is_empty())
        .map(|f| f.logical.clone())
        .collect();
    let workers: BTreeSet<String> = fs
        .iter()
        .filter(|f| f.queues_work())
        .map(|f| f.logical.clone())
        .collect();
    let errors = covered("Errors");
    for f in http.iter().chain(&workers) {
        assert!(errors.contains(f), "no alarm on {f}'s errors");
    }
    let work_queues: BTreeSet<String> = fs
        .iter()
        .filter(|f| f.queues_work())
        .flat_map(|f| f.queues.clone())
        .collect();
    assert_eq!(
        covered("ApproximateAgeOfOldestMessage"),
        work_queues,
        "the oldest message of every work queue"
    );
    let api_errors = covered("5xx");
    assert!(api_errors.contains("HttpApi") && api_errors.contains("$default"));
    // The failure rate: failed attempts over all attempts, per provider.
    let rate = &r["SyncFailureRateAlarm"]["Properties"];
    let stats: BTreeSet<(String, String)> = list(&rate["Metrics"])
        .iter()
        .filter(|m| m["MetricStat"]["Metric"]["MetricName"].as_str() == Some("SyncFailed"))
        .map(|m| {
            (
                list(&m["MetricStat"]["Metric"]["Dimensions"])[0]["Value"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                m["MetricStat"]["Stat"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for provider in ["ga4", "meta_ads", "resend"] {
        for stat in ["Sum", "SampleCount"] {
            assert!(
                stats.contains(&(provider.to_owned(), stat.to_owned())),
                "SyncFailureRateAlarm: {stat} of {provider}'s SyncFailed"
            );
        }
    }
    let signatures = covered("WebhookSignatureFailed");
    assert!(signatures.contains("meta_ads") && signatures.contains("resend"));
}

/// After a stack delete (or a failed first deploy's rollback) the next deploy
/// must not find a name taken: resources that are retained, or whose names stay
/// taken for a while (SQS: 60 s; Secrets Manager: the recovery window), let
/// CloudFormation name them. The secret exists from the start, so functions start.
#[test]
fn a_redeploy_finds_no_name_taken() {
    let t = template();
    let r = &t["Resources"];
    for (logical, res) in entries(r) {
        let p = &res["Properties"];
        let retained = res["DeletionPolicy"].as_str() == Some("Retain");
        let fixed = match res["Type"].as_str().unwrap() {
            "AWS::DynamoDB::Table" => Some("TableName"),
            "AWS::SQS::Queue" => Some("QueueName"),
            "AWS::SecretsManager::Secret" => Some("Name"),
            "AWS::Logs::LogGroup" => Some("LogGroupName"),
            "AWS::KMS::Key" => {
                assert!(retained, "{logical}: a KMS key is retained");
                None
            }
            _ => None,
        };
        if let Some(name) = fixed {
            assert!(p[name] == Yaml::BadValue, "{logical} has a fixed {name}");
        }
        if res["Type"].as_str() == Some("AWS::SQS::Queue") {
            // SQS's AWS managed key: its key policy lets the account's roles
            // (functions, the schedule) use it through SQS without a grant.
            assert_eq!(
                p["KmsMasterKeyId"].as_str(),
                Some("alias/aws/sqs"),
                "{logical}"
            );
        }
    }
    assert_eq!(
        r["AppSecret"]["Properties"]["SecretString"].as_str(),
        Some("{}")
    );
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

/// checkov's skips are decisions: each names its check and says why.
#[test]
fn every_checkov_skip_says_why() {
    let t = template();
    for (logical, res) in entries(&t["Resources"]) {
        for skip in list(&res["Metadata"]["checkov"]["skip"]) {
            let id = skip["id"].as_str().unwrap_or_default();
            assert!(id.starts_with("CKV"), "{logical}: skip without an id");
            assert!(
                skip["comment"].as_str().is_some_and(|c| c.len() > 40),
                "{logical}: skip of {id} without a reason"
            );
        }
    }
}
