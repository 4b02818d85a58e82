//! A recording proxy in front of `moto_server`: every AWS call a client makes
//! through it, by operation, and the IAM actions that call needs. The
//! end-to-end test checks each function's calls against its role in
//! `template.yaml`; the benchmarks count calls (queue batches, KMS, "no scan").
//! The benchmarks also give it a latency: moto answers on loopback in well
//! under a millisecond, where a region's DynamoDB, SQS, KMS or Secrets Manager
//! call takes milliseconds, which is what start-up work and fan-out wait on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One call: its operation (`dynamodb:TransactWriteItems`), what IAM must
/// allow for it (a transaction needs the actions of its parts), the resources
/// it names (table, queue URL, key, secret: as the client sent them) and, for
/// KMS, the encryption context it passed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsCall {
    pub operation: String,
    pub iam_actions: Vec<String>,
    pub resources: Vec<String>,
    pub encryption_context: BTreeMap<String, String>,
    /// A DynamoDB item call's partition key values (IAM's `dynamodb:LeadingKeys`).
    pub leading_keys: Vec<String>,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<AwsCall>>>,
    /// Added to every call's round trip.
    latency: std::time::Duration,
}

pub struct AwsCalls {
    /// Where clients send their calls (`AWS_ENDPOINT_URL`).
    pub url: String,
    calls: Arc<Mutex<Vec<AwsCall>>>,
}

impl AwsCalls {
    /// Serves on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        Self::start_with_latency(upstream, std::time::Duration::ZERO).await
    }

    /// [`AwsCalls::start`], each call answered `latency` later than the
    /// upstream answers it (a region's round trip, for the benchmarks).
    pub async fn start_with_latency(upstream: &str, latency: std::time::Duration) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: crate::client(),
            calls: calls.clone(),
            latency,
        };
        let router = axum::Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url: format!("http://{addr}"),
            calls,
        }
    }

    pub fn calls(&self) -> Vec<AwsCall> {
        self.calls.lock().unwrap().clone()
    }

    /// Calls so far by operation.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for call in self.calls.lock().unwrap().iter() {
            *out.entry(call.operation.clone()).or_default() += 1;
        }
        out
    }

    pub fn count(&self, operation: &str) -> usize {
        self.counts().get(operation).copied().unwrap_or(0)
    }

    pub fn reset(&self) {
        self.calls.lock().unwrap().clear();
    }
}

/// The service prefix IAM uses for a JSON protocol's target prefix.
fn service(target_prefix: &str) -> Option<&'static str> {
    Some(match target_prefix {
        p if p.starts_with("DynamoDB_") => "dynamodb",
        "TrentService" => "kms",
        "secretsmanager" => "secretsmanager",
        "AmazonSQS" => "sqs",
        _ => return None,
    })
}

/// What one request is, from `X-Amz-Target` (JSON protocols) or the query
/// protocol's `Action` form field.
pub fn classify(headers: &HeaderMap, body: &[u8]) -> AwsCall {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split_once('.'));
    let (service, operation) = match target.and_then(|(p, op)| Some((service(p)?, op))) {
        Some((service, op)) => (service.to_owned(), op.to_owned()),
        None => {
            let action = url::form_urlencoded::parse(body)
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| "Unknown".into());
            ("sqs".to_owned(), action)
        }
    };
    let iam_actions = match (service.as_str(), operation.as_str()) {
        ("dynamodb", "TransactWriteItems") => {
            transaction_parts(body, "TransactItems", |kind| match kind {
                "Put" => "PutItem",
                "Update" => "UpdateItem",
                "Delete" => "DeleteItem",
                _ => "ConditionCheckItem",
            })
        }
        ("dynamodb", "TransactGetItems") => transaction_parts(body, "TransactItems", |_| "GetItem"),
        // IAM has no batch actions for SQS: a batch needs the single action.
        ("sqs", op) if op.ends_with("Batch") => {
            vec![format!("sqs:{}", op.trim_end_matches("Batch"))]
        }
        (service, op) => vec![format!("{service}:{op}")],
    };
    let json: Value = serde_json::from_slice(body).unwrap_or_default();
    let form = || {
        url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "QueueUrl")
            .map(|(_, v)| v.into_owned())
    };
    AwsCall {
        operation: format!("{service}:{operation}"),
        iam_actions,
        resources: named_resources(&json)
            .or_else(|| form().map(|u| vec![u]))
            .unwrap_or_default(),
        leading_keys: ["Key", "Item"]
            .iter()
            .filter_map(|f| json[*f]["PK"]["S"].as_str().map(str::to_owned))
            .collect(),
        encryption_context: json["EncryptionContext"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect(),
    }
}

/// The resources a JSON-protocol request names: `TableName` (also inside
/// transactions and batches), `QueueUrl`, `KeyId`, `SecretId`.
fn named_resources(body: &Value) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for field in ["TableName", "QueueUrl", "QueueName", "KeyId", "SecretId"] {
        if let Some(v) = body[field].as_str() {
            out.push(v.to_owned());
        }
    }
    for item in body["TransactItems"].as_array().into_iter().flatten() {
        for (_, part) in item.as_object().into_iter().flatten() {
            if let Some(t) = part["TableName"].as_str() {
                out.push(t.to_owned());
            }
        }
    }
    // BatchGetItem and BatchWriteItem: tables are the keys.
    out.extend(
        body["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(t, _)| t.clone()),
    );
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

fn transaction_parts(body: &[u8], field: &str, action: fn(&str) -> &'static str) -> Vec<String> {
    let body: Value = serde_json::from_slice(body).unwrap_or_default();
    let mut out: Vec<String> = body[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_object()?.keys().next().cloned())
        .map(|kind| format!("dynamodb:{}", action(&kind)))
        .collect();
    out.sort();
    out.dedup();
    out
}

async fn forward(
    State(proxy): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    proxy.calls.lock().unwrap().push(classify(&headers, &body));
    if !proxy.latency.is_zero() {
        tokio::time::sleep(proxy.latency).await;
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = proxy
        .http
        .request(method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            for (name, value) in &headers {
                if name != axum::http::header::CONTENT_LENGTH
                    && name != axum::http::header::TRANSFER_ENCODING
                {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-amz-target", t.parse().unwrap());
        h
    }

    #[test]
    fn operations_and_their_iam_actions() {
        let c = classify(&target("DynamoDB_20120810.Query"), b"{}");
        assert_eq!(c.operation, "dynamodb:Query");
        assert_eq!(c.iam_actions, ["dynamodb:Query"]);
        let c = classify(
            &target("DynamoDB_20120810.TransactWriteItems"),
            br#"{"TransactItems":[{"Put":{}},{"Update":{}},{"ConditionCheck":{}},{"Put":{}}]}"#,
        );
        assert_eq!(
            c.iam_actions,
            [
                "dynamodb:ConditionCheckItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem"
            ]
        );
        let c = classify(&target("AmazonSQS.SendMessageBatch"), b"{}");
        assert_eq!(c.operation, "sqs:SendMessageBatch");
        assert_eq!(c.iam_actions, ["sqs:SendMessage"]);
        let c = classify(
            &target("TrentService.GenerateDataKey"),
            br#"{"KeyId":"k-1","EncryptionContext":{"workspace":"acme","integration":"i-1"}}"#,
        );
        assert_eq!(c.iam_actions, ["kms:GenerateDataKey"]);
        assert_eq!(c.resources, ["k-1"]);
        assert_eq!(c.encryption_context["workspace"], "acme");
        let c = classify(
            &target("DynamoDB_20120810.TransactWriteItems"),
            br#"{"TransactItems":[{"Put":{"TableName":"t-1"}},{"Update":{"TableName":"t-1"}}]}"#,
        );
        assert_eq!(c.resources, ["t-1"]);
        let c = classify(
            &target("DynamoDB_20120810.BatchWriteItem"),
            br#"{"RequestItems":{"t-2":[]}}"#,
        );
        assert_eq!(c.resources, ["t-2"]);
        let c = classify(
            &target("DynamoDB_20120810.PutItem"),
            br#"{"TableName":"t-1","Item":{"PK":{"S":"EPHEMERAL#k"},"SK":{"S":"EPHEMERAL"}}}"#,
        );
        assert_eq!(c.leading_keys, ["EPHEMERAL#k"]);
        let c = classify(
            &HeaderMap::new(),
            b"Action=ReceiveMessage&Version=2012-11-05",
        );
        assert_eq!(c.operation, "sqs:ReceiveMessage");
    }
}
