//! `template.yaml` as the tests read it: its functions (binary, timeout,
//! variables, routes, queues, policies) and what each role allows, with SAM's
//! policy templates expanded. CloudFormation's tags (`!Ref`, `!Sub`, …) are
//! dropped by the YAML reader; their values are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use yaml_rust2::{Yaml, YamlLoader};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `template.yaml`, parsed.
pub fn template() -> Yaml {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// A scalar as text.
pub fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A sequence (a scalar as a one-item list, nothing as none).
pub fn list(y: &Yaml) -> Vec<Yaml> {
    match y {
        Yaml::Array(a) => a.clone(),
        Yaml::BadValue => Vec::new(),
        other => vec![other.clone()],
    }
}

/// A mapping's entries with text keys.
pub fn entries(y: &Yaml) -> Vec<(String, Yaml)> {
    match y {
        Yaml::Hash(h) => h
            .iter()
            .filter_map(|(k, v)| text(k).map(|k| (k, v.clone())))
            .collect(),
        _ => Vec::new(),
    }
}

/// One `AWS::Serverless::Function` of the template.
pub struct Function {
    pub logical: String,
    pub binary: String,
    pub timeout: i64,
    /// The variables as text (globals applied); a conditional one
    /// (`!If [Condition, a, b]`) as `b`, its value when the condition is false
    /// (left out when that is `!Ref AWS::NoValue`).
    pub environment: BTreeMap<String, String>,
    /// The variables as written (globals applied), `!If` kept as `[Condition, a, b]`.
    pub variables: BTreeMap<String, Yaml>,
    /// HTTP API routes: (method, path pattern).
    pub routes: Vec<(String, String)>,
    /// Queues it consumes (logical ids).
    pub queues: Vec<String>,
    pub policies: Yaml,
}

/// Every function of the template, with the globals applied.
pub fn functions(t: &Yaml) -> Vec<Function> {
    let globals = &t["Globals"]["Function"];
    let default_timeout = globals["Timeout"].as_i64().unwrap_or(3);
    let global_vars: BTreeMap<String, Yaml> = entries(&globals["Environment"]["Variables"])
        .into_iter()
        .collect();
    entries(&t["Resources"])
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(logical, r)| {
            let p = &r["Properties"];
            let mut variables = global_vars.clone();
            variables.extend(entries(&p["Environment"]["Variables"]));
            let environment = variables
                .iter()
                .filter_map(|(k, v)| {
                    let v = text(&branch(t, v, false)).unwrap_or_default();
                    (v != NO_VALUE).then(|| (k.clone(), v))
                })
                .collect();
            let mut routes = Vec::new();
            let mut queues = Vec::new();
            for (_, e) in entries(&p["Events"]) {
                match e["Type"].as_str() {
                    Some("HttpApi") => routes.push((
                        e["Properties"]["Method"].as_str().unwrap().to_uppercase(),
                        e["Properties"]["Path"].as_str().unwrap().to_owned(),
                    )),
                    Some("SQS") => {
                        let arn = e["Properties"]["Queue"].as_str().unwrap();
                        queues.push(arn.trim_end_matches(".Arn").to_owned());
                        assert!(
                            list(&e["Properties"]["FunctionResponseTypes"])
                                .iter()
                                .any(|t| t.as_str() == Some("ReportBatchItemFailures")),
                            "{logical}: SQS events report batch item failures"
                        );
                    }
                    _ => {}
                }
            }
            Function {
                binary: r["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{logical}: no Metadata.BuildProperties.Binary"))
                    .to_owned(),
                timeout: p["Timeout"].as_i64().unwrap_or(default_timeout),
                environment,
                variables,
                routes,
                queues,
                policies: p["Policies"].clone(),
                logical,
            }
        })
        .collect()
}

/// `!Ref AWS::NoValue` as read: a variable with it is not set.
pub const NO_VALUE: &str = "AWS::NoValue";

/// `v` with its `!If [Condition, a, b]` (a condition of the template) resolved
/// to `a` when `condition_holds`, else `b`; anything else as it is.
pub fn branch(t: &Yaml, v: &Yaml, condition_holds: bool) -> Yaml {
    match v {
        Yaml::Array(a)
            if a.len() == 3
                && a[0]
                    .as_str()
                    .is_some_and(|c| t["Conditions"][c] != Yaml::BadValue) =>
        {
            branch(t, &a[if condition_holds { 1 } else { 2 }], condition_holds)
        }
        other => other.clone(),
    }
}

/// A reference's logical id: `!GetAtt X.Arn` and `!Ref X` (read as `X.Arn`, `X`) → `X`.
pub fn logical_id(reference: &Yaml) -> Option<String> {
    reference
        .as_str()
        .map(|r| r.split('.').next().unwrap_or(r).to_owned())
}

impl Function {
    /// A provider's sync worker: it consumes a work queue (not a dead-letter one).
    pub fn queues_work(&self) -> bool {
        self.binary == "sync-worker" && !self.queues.is_empty()
    }

    /// The provider a worker works for (`meta_ads`): the one whose
    /// `KPI_QUEUE_URL_<PROVIDER>` names the queue it consumes, which is how
    /// the worker itself tells (`kpi_lambda::provider_of`).
    pub fn work_provider(&self) -> Option<String> {
        if !self.queues_work() {
            return None;
        }
        self.environment.iter().find_map(|(k, v)| {
            let suffix = k.strip_prefix("KPI_QUEUE_URL_")?;
            self.queues
                .iter()
                .any(|q| q == v)
                .then(|| suffix.to_ascii_lowercase())
        })
    }
}

/// The actions SAM's policy templates grant (the ones the template uses).
pub fn sam_policy(name: &str) -> Vec<&'static str> {
    match name {
        "DynamoDBCrudPolicy" => vec![
            "dynamodb:GetItem",
            "dynamodb:DeleteItem",
            "dynamodb:PutItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
            "dynamodb:ConditionCheckItem",
        ],
        "DynamoDBReadPolicy" => vec![
            "dynamodb:GetItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
        ],
        "SQSSendMessagePolicy" => vec!["sqs:SendMessage*", "sqs:ChangeMessageVisibility*"],
        "SQSPollerPolicy" => vec![
            "sqs:ChangeMessageVisibility",
            "sqs:ChangeMessageVisibilityBatch",
            "sqs:DeleteMessage",
            "sqs:DeleteMessageBatch",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
        ],
        "AWSSecretsManagerGetSecretValuePolicy" => vec!["secretsmanager:GetSecretValue"],
        "KMSDecryptPolicy" => vec!["kms:Decrypt"],
        other => panic!("the template uses policy template {other}; add its actions here"),
    }
}

/// Every action `f`'s role allows (wildcards as written).
pub fn granted(f: &Function) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for policy in list(&f.policies) {
        for (name, body) in entries(&policy) {
            if name == "Statement" {
                for st in list(&body) {
                    if st["Effect"].as_str() == Some("Allow") {
                        for a in list(&st["Action"]) {
                            out.insert(a.as_str().unwrap().to_owned());
                        }
                    }
                }
            } else {
                out.extend(sam_policy(&name).into_iter().map(str::to_owned));
            }
        }
    }
    out
}

/// The statements of `f`'s role that it writes itself (not SAM's policy templates).
pub fn statements(f: &Function) -> Vec<Yaml> {
    list(&f.policies)
        .iter()
        .flat_map(|p| list(&p["Statement"]))
        .collect()
}

/// Every action `f`'s own statements allow on the resource `logical` (named by
/// `!GetAtt logical.Arn` or `!Ref logical`).
pub fn granted_on(f: &Function, logical: &str) -> BTreeSet<String> {
    statements(f)
        .iter()
        .filter(|st| st["Effect"].as_str() == Some("Allow"))
        .filter(|st| {
            list(&st["Resource"])
                .iter()
                .any(|r| logical_id(r).as_deref() == Some(logical))
        })
        .flat_map(|st| list(&st["Action"]))
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

/// Whether `granted` covers `action` (`sqs:SendMessage*` covers `sqs:SendMessageBatch`).
pub fn allows(granted: &BTreeSet<String>, action: &str) -> bool {
    granted.iter().any(|g| match g.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => g == action,
    })
}
