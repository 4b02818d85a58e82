//! AWS mode end to end, offline: the real `api`, `sync-scheduler` and
//! `sync-worker` (on the Resend queue) and `webhook` binaries, each under a local Lambda Runtime API, against
//! `moto_server` (DynamoDB, SQS, KMS, Secrets Manager) and the sandbox's Resend
//! on its own port, with identity from a JWKS endpoint — the deployed path:
//!
//! API Gateway event → `api` creates and configures an integration (the key
//! checked at Resend, sealed with KMS, stored in DynamoDB) → the scheduler's
//! EventBridge tick sends the due job to SQS → the worker gets that batch as
//! the SQS event source hands it, syncs, answers no failures → `api` serves
//! the job and the KPIs. Each function's AWS calls, recorded on the wire,
//! are held against its role in `template.yaml`.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kpi_sandbox::{Sandbox, SandboxConfig};
use kpi_tests::aws_calls::AwsCalls;
use kpi_tests::moto::{MotoServer, temp_dir};
use kpi_tests::runtime::{Function, HttpAnswer, build_functions, http_event, sqs_event};
use kpi_tests::stack::Stack;
use serde_json::{Value, json};

const ISSUER: &str = "https://auth.example.test/";
const AUDIENCE: &str = "kpi-integrations";
const API_KEY: &str = "re_e2eLocalStackKey42";

/// The identity provider: the test RSA key's JWKS on a free port.
async fn jwks_server() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("rsa-test-key.jwk.json")).unwrap())
            .unwrap();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let jwk = jwk.clone();
            async move { axum::Json(json!({ "keys": [jwk] })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/.well-known/jwks.json")
}

fn token(workspace: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let key = EncodingKey::from_rsa_der(&std::fs::read(dir.join("rsa-test-key.der")).unwrap());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let claims = json!({
        "sub": "user-e2e",
        "workspaces": [workspace],
        "platform_admin": false,
        "email": "owner@acme.test",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": chrono::Utc::now().timestamp() + 3600,
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// One request to an HTTP function, as API Gateway would hand it.
async fn request(
    function: &mut Function,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&Value>,
) -> HttpAnswer {
    let auth = format!("Bearer {bearer}");
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(Value::to_string);
    let answer = function
        .invoke(&http_event(method, path, &headers, body.as_deref()))
        .await;
    HttpAnswer::from_answer(&answer)
}

/// The binaries run, and the function of the template each one is deployed as.
const FUNCTIONS: [(&str, &str); 4] = [
    ("api", "ApiFunction"),
    ("sync-scheduler", "SyncSchedulerFunction"),
    ("sync-worker", "SyncResendFunction"),
    ("webhook", "WebhookFunction"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_path_from_an_api_request_to_served_kpis() {
    let bin = tokio::task::spawn_blocking(|| build_functions(&FUNCTIONS.map(|(binary, _)| binary)))
        .await
        .unwrap();

    let moto = Arc::new(MotoServer::start());
    let sandbox = Sandbox::new(SandboxConfig::default());
    let sandbox_url = sandbox.serve().await.unwrap();
    let jwks = jwks_server().await;
    let app_secret: serde_json::Map<String, Value> = sandbox
        .app_credentials()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let mut stack = Stack::create(&moto, &Value::Object(app_secret)).await;
    // Identity and the providers' endpoints, as a deployment sets them; the
    // providers are the sandbox's, reached over HTTP on its own port.
    stack.set("KPI_AUTH_JWKS_URL", jwks);
    stack.set("KPI_AUTH_ISSUER", ISSUER);
    stack.set("KPI_AUTH_AUDIENCE", AUDIENCE);
    stack.set("RESEND_API_URL", format!("{sandbox_url}/resend"));
    for (name, path) in [
        ("GOOGLE_AUTH_URL", "google/auth"),
        ("GOOGLE_TOKEN_URL", "google/token"),
        ("GOOGLE_REVOKE_URL", "google/revoke"),
        ("GA4_ADMIN_API_URL", "ga4/admin/v1beta"),
        ("GA4_DATA_API_URL", "ga4/data/v1beta"),
        ("META_AUTH_URL", "meta/dialog/oauth"),
        ("META_GRAPH_URL", "meta/graph"),
    ] {
        stack.set(name, format!("{sandbox_url}/{path}"));
    }

    let logs = temp_dir("kpi-lambda-e2e");
    // Each function reaches AWS through its own recorder, so its calls can be
    // held against its role.
    let mut recorders = Vec::new();
    let mut functions = Vec::new();
    for (name, _) in FUNCTIONS {
        let recorder = AwsCalls::start(moto.endpoint()).await;
        let mut env = stack.env.clone();
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL".into(), recorder.url.clone()));
        functions
            .push(Function::start(bin.join(name), &env, logs.join(format!("{name}.log"))).await);
        recorders.push((name, recorder));
    }
    let [mut api, mut scheduler, mut worker, mut webhook] =
        <[Function; 4]>::try_from(functions).ok().unwrap();
    let bearer = token("acme");

    // Unauthenticated: the deployed API refuses before anything else.
    let refused = HttpAnswer::from_answer(
        &api.invoke(&http_event(
            "GET",
            "/v1/workspaces/acme/integrations",
            &[],
            None,
        ))
        .await,
    );
    assert_eq!(refused.status, 401, "{}", refused.body);

    // 1. Create: the key is checked at Resend, sealed with KMS, stored in DynamoDB.
    let created = request(
        &mut api,
        "POST",
        "/v1/workspaces/acme/integrations",
        &bearer,
        Some(&json!({ "provider": "resend", "api_key": API_KEY, "display_name": "Acme mail" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let integration = created.json();
    let id = integration["id"].as_str().unwrap().to_owned();
    assert_eq!(integration["status"], "connected", "{integration}");
    assert!(!created.body.contains(API_KEY));
    let item = kpi_tests::fixtures::dump_table(&moto, &stack.store)
        .await
        .join("\n");
    assert!(item.contains(&id), "the integration is in the table");
    assert!(!item.contains(API_KEY), "the key is stored sealed");

    // 1b. The key registered an endpoint of the integration's own at Resend;
    //     a delivery signed with its secret is checked by the webhook
    //     function, which opens the integration's credentials with KMS.
    assert_eq!(integration["webhooks"]["subscribed"], true, "{integration}");
    let hook = sandbox
        .resend_webhooks()
        .into_iter()
        .next()
        .expect("an endpoint registered");
    let path = format!("/v1/webhooks/resend/{id}");
    assert!(hook.endpoint.ends_with(&path), "{}", hook.endpoint);
    let body = json!({"type": "email.delivered", "created_at": chrono::Utc::now().to_rfc3339(),
        "data": {"email_id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c", "to": ["a@example.com"]}})
    .to_string();
    let now = chrono::Utc::now().timestamp().to_string();
    let signature = kpi_sandbox::resend_events::svix_signature(
        &hook.signing_secret,
        "msg_e2e",
        now.parse().unwrap(),
        body.as_bytes(),
    );
    // The same delivery ten minutes late (a replay) is the function's first
    // event: refused before its configuration, whose secret is then read in
    // the background, and the next delivery is served by it.
    let late = (now.parse::<i64>().unwrap() - 600).to_string();
    let delivery_at = |timestamp: &str| {
        http_event(
            "POST",
            &path,
            &[
                ("content-type", "application/json"),
                ("svix-id", "msg_e2e"),
                ("svix-timestamp", timestamp),
                ("svix-signature", &signature),
            ],
            Some(&body),
        )
    };
    let replayed = HttpAnswer::from_answer(&webhook.invoke(&delivery_at(&late)).await);
    assert_eq!(replayed.status, 401, "{}", replayed.body);
    assert!(
        replayed.body.contains("svix-timestamp"),
        "{}",
        replayed.body
    );
    let delivered = HttpAnswer::from_answer(&webhook.invoke(&delivery_at(&now)).await);
    assert_eq!(delivered.status, 200, "{}", delivered.body);

    // 2. Configure: hourly, a sender name.
    let patched = request(
        &mut api,
        "PATCH",
        &format!("/v1/workspaces/acme/integrations/{id}"),
        &bearer,
        Some(&json!({ "sync_interval_minutes": 60, "settings": { "from_name": "Acme" } })),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["sync_interval_minutes"], 60);

    // Another workspace's caller sees nothing of it.
    let foreign = request(
        &mut api,
        "GET",
        &format!("/v1/workspaces/other/integrations/{id}"),
        &token("other"),
        None,
    )
    .await;
    assert_eq!(foreign.status, 404, "{}", foreign.body);

    // 3. The EventBridge tick: the new integration is due; its job goes to SQS.
    let tick = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/sync-scheduler-tick.json"
    ))
    .unwrap();
    let report = scheduler
        .invoke_within(&tick, Duration::from_secs(60))
        .await
        .expect("the scheduler answered");
    assert!(report.ok, "scheduler failed: {}", report.body);
    let report = report.json();
    assert_eq!(report["jobs_created"], 1, "{report}");
    assert_eq!(report["messages_sent"], 1, "{report}");

    // 4. The event source: receive the batch from the Resend queue, hand it to
    //    the worker, delete what it did not report as failed.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let queue_url = stack.queues[&kpi_providers::resend::ID].clone();
    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let messages = received.messages().to_vec();
    assert_eq!(messages.len(), 1, "one job message: {messages:?}");
    let event = sqs_event(&stack.queue_arn(kpi_providers::resend::ID).await, &messages);
    let batch = worker.invoke(&event).await;
    assert!(batch.ok, "worker failed: {}", batch.body);
    assert_eq!(
        batch.json()["batchItemFailures"],
        json!([]),
        "{}",
        batch.body
    );
    for m in &messages {
        sqs.delete_message()
            .queue_url(&queue_url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }

    // 5. The API serves the job's outcome and the KPIs the worker wrote.
    let jobs = request(
        &mut api,
        "GET",
        &format!("/v1/workspaces/acme/integrations/{id}/jobs"),
        &bearer,
        None,
    )
    .await;
    assert_eq!(jobs.status, 200, "{}", jobs.body);
    let jobs = jobs.json();
    assert_eq!(jobs["items"][0]["status"], "succeeded", "{jobs}");
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Duration::days(35);
    let kpis = request(
        &mut api,
        "GET",
        &format!("/v1/workspaces/acme/kpis?metric=resend.delivered&from={from}&to={today}"),
        &bearer,
        None,
    )
    .await;
    assert_eq!(kpis.status, 200, "{}", kpis.body);
    let kpis = kpis.json();
    let points = kpis["points"].as_array().unwrap();
    assert!(!points.is_empty(), "the worker's points are served: {kpis}");
    assert!(points.iter().all(|p| p["integration"] == id.as_str()));

    // The integration reads synced, the next scheduled sync about an hour on.
    let view = request(
        &mut api,
        "GET",
        &format!("/v1/workspaces/acme/integrations/{id}"),
        &bearer,
        None,
    )
    .await
    .json();
    let at = |k: &str| {
        view[k]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("{k}: {view}"))
    };
    let gap = at("next_sync_at") - at("last_success_at");
    assert!(
        (55..=61).contains(&gap.num_minutes()),
        "next sync {gap} after the last: {view}"
    );

    // Nothing logged the key or the bearer token.
    for f in [&api, &scheduler, &worker, &webhook] {
        let log = f.log();
        assert!(!log.is_empty(), "{} logged nothing", f.name);
        assert!(!log.contains(API_KEY), "{} logged the API key", f.name);
        assert!(!log.contains(&bearer), "{} logged the token", f.name);
    }
    drop((api, scheduler, worker, webhook));

    // Every AWS call each function made, and every KMS use a service made
    // for it (the table's key, the secret's key), is one AWS would allow its
    // role in template.yaml, resources and conditions included.
    let template = kpi_tests::template::template();
    let roles = kpi_tests::template::functions(&template);
    let names = kpi_tests::iam::Names::from_env(&template, &stack.env);
    for (name, recorder) in &recorders {
        let logical = FUNCTIONS.iter().find(|(b, _)| b == name).unwrap().1;
        let role = roles
            .iter()
            .find(|f| f.logical == logical && f.binary == *name)
            .unwrap_or_else(|| panic!("{name}: no function {logical} in template.yaml"));
        let calls = recorder.calls();
        assert!(!calls.is_empty(), "{name} made no AWS call");
        let mut service_side = 0;
        for call in calls {
            for request in kpi_tests::iam::requests(&template, &names, &call) {
                service_side += usize::from(
                    request.action.starts_with("kms:") && !call.operation.starts_with("kms:"),
                );
                kpi_tests::iam::authorize(&template, role, &request)
                    .unwrap_or_else(|why| panic!("{name}: {why}"));
            }
        }
        assert!(
            service_side > 0,
            "{name}: no service-side key use was modelled"
        );
    }
    kpi_tests::moto::remove_dir(&logs);
}
