//! The IAM model of the end-to-end test: what AWS itself would check for each
//! call a function made, held against `template.yaml`.
//!
//! moto enforces no IAM policy, no key policy and no service-side key use, so
//! a role that lacks a statement works on moto and fails on AWS. This model
//! turns each recorded call into the requests AWS authorises:
//!
//! * the call itself: its IAM actions on the resource it names, with its
//!   condition keys (a KMS call's encryption context);
//! * the KMS requests a service makes on the caller's behalf when the resource
//!   is encrypted with a KMS key: DynamoDB decrypting a table's key for an item
//!   call, Secrets Manager decrypting a secret for `GetSecretValue`, SQS
//!   generating and decrypting data keys of an SSE-KMS queue. These carry
//!   `kms:ViaService` and the service's own encryption context.
//!
//! Each request must be allowed by the function's role (its statements with
//! resources and conditions, SAM's policy templates expanded) — and, for a key,
//! by its key policy: a customer key whose policy lets the account administer
//! it defers to IAM; an AWS managed key (`alias/aws/<service>`) allows every
//! principal of the account through its service and nothing else.
//!
//! Resources are named by their logical ids: a call's physical names are
//! mapped back through the environment the template gives the functions
//! (`KPI_STORE: !Sub "dynamodb:${Table}"` and the stack's `dynamodb:kpi-…`).

use std::collections::BTreeMap;

use yaml_rust2::Yaml;

use crate::aws_calls::AwsCall;
use crate::template::{Function, entries, list, sam_policy, text};

/// The region and account the model's requests come from (moto's defaults).
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// What a request is made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A resource of the template, by logical id.
    Logical(String),
    /// An AWS managed key, by its service (`alias/aws/sqs` → `sqs`).
    ManagedKey(String),
    /// A name the template does not declare.
    Unknown(String),
}

/// One request IAM authorises.
#[derive(Debug, Clone)]
pub struct Request {
    pub action: String,
    pub resource: Resource,
    /// Condition keys and their values (multi-valued keys have several).
    pub context: BTreeMap<String, Vec<String>>,
    /// Why the request is made, for failure messages.
    pub why: String,
}

/// Physical names (as clients send them) → logical ids.
pub struct Names(BTreeMap<String, String>);

impl Names {
    /// From the functions' environment in `template` (`Globals`) and the
    /// values a stack gave the same variables.
    pub fn from_env(template: &Yaml, env: &[(String, String)]) -> Self {
        let globals = entries(&template["Globals"]["Function"]["Environment"]["Variables"]);
        let mut names = BTreeMap::new();
        for (variable, value) in globals {
            let Some(pattern) = text(&value) else {
                continue;
            };
            let Some((_, physical)) = env.iter().find(|(k, _)| *k == variable) else {
                continue;
            };
            if let Some((logical, physical)) = unsubstitute(&pattern, physical) {
                names.insert(physical, logical);
            }
        }
        Self(names)
    }

    /// Adds one name (a resource the functions find another way).
    pub fn insert(&mut self, physical: impl Into<String>, logical: impl Into<String>) {
        self.0.insert(physical.into(), logical.into());
    }

    fn resolve(&self, template: &Yaml, physical: &str) -> Resource {
        if let Some(logical) = self.0.get(physical) {
            return Resource::Logical(logical.clone());
        }
        // A key named by its ARN where the variable held its id, or the reverse.
        for (known, logical) in &self.0 {
            if physical.ends_with(&format!("/{known}")) || known.ends_with(&format!("/{physical}"))
            {
                return Resource::Logical(logical.clone());
            }
        }
        if template["Resources"][physical].as_hash().is_some() {
            return Resource::Logical(physical.to_owned());
        }
        Resource::Unknown(physical.to_owned())
    }
}

/// `("dynamodb:${Table}", "dynamodb:kpi-1")` → `("Table", "kpi-1")`;
/// `("AppSecret", "arn:…")` (a `!Ref`) → `("AppSecret", "arn:…")`.
fn unsubstitute(pattern: &str, physical: &str) -> Option<(String, String)> {
    match pattern.split_once("${") {
        Some((prefix, rest)) => {
            let (inner, suffix) = rest.split_once('}')?;
            if inner.starts_with("AWS::") {
                return None;
            }
            let logical = inner.split('.').next()?.to_owned();
            let value = physical.strip_prefix(prefix)?.strip_suffix(suffix)?;
            Some((logical, value.to_owned()))
        }
        None if pattern.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Some((pattern.to_owned(), physical.to_owned()))
        }
        None => None,
    }
}

/// A template value in the model's terms: pseudo parameters filled in, other
/// `${X}` and `X.Arn` as the logical id `X`.
fn resolve_value(value: &str) -> String {
    let mut out = value
        .replace("${AWS::Region}", REGION)
        .replace("${AWS::AccountId}", ACCOUNT)
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::URLSuffix}", "amazonaws.com");
    while let Some(start) = out.find("${") {
        let Some(end) = out[start..].find('}') else {
            break;
        };
        let inner = out[start + 2..start + end]
            .split('.')
            .next()
            .unwrap_or("")
            .to_owned();
        out.replace_range(start..start + end + 1, &inner);
    }
    out
}

/// What a `Resource` entry or a key reference names.
fn resource_of(template: &Yaml, value: &str) -> Resource {
    if let Some(service) = value.strip_prefix("alias/aws/") {
        return Resource::ManagedKey(service.to_owned());
    }
    let logical = resolve_value(value);
    let logical = logical.strip_suffix(".Arn").unwrap_or(&logical).to_owned();
    if template["Resources"][logical.as_str()].as_hash().is_some() {
        Resource::Logical(logical)
    } else {
        Resource::Unknown(logical)
    }
}

fn service_context(service: &str) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        (
            "kms:ViaService".to_owned(),
            vec![format!("{service}.{REGION}.amazonaws.com")],
        ),
        ("kms:CallerAccount".to_owned(), vec![ACCOUNT.to_owned()]),
    ])
}

fn with_encryption_context(
    mut context: BTreeMap<String, Vec<String>>,
    pairs: &[(&str, String)],
) -> BTreeMap<String, Vec<String>> {
    for (k, v) in pairs {
        context.insert(format!("kms:EncryptionContext:{k}"), vec![v.clone()]);
    }
    context.insert(
        "kms:EncryptionContextKeys".to_owned(),
        pairs.iter().map(|(k, _)| (*k).to_owned()).collect(),
    );
    context
}

/// DynamoDB item operations: each one needs the table key (in plain text in
/// DynamoDB's memory, decrypted under the caller's authority when not cached).
const DYNAMODB_ITEM_CALLS: &[&str] = &[
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
];

/// The KMS key a resource of the template is encrypted with, if any.
fn encryption_key(template: &Yaml, logical: &str) -> Option<Resource> {
    let r = &template["Resources"][logical];
    let p = &r["Properties"];
    match r["Type"].as_str()? {
        "AWS::DynamoDB::Table" => {
            let sse = &p["SSESpecification"];
            if sse["SSEEnabled"].as_bool() != Some(true) {
                return None; // AWS owned key: nothing the account authorises.
            }
            Some(match text(&sse["KMSMasterKeyId"]) {
                Some(key) => resource_of(template, &key),
                None => Resource::ManagedKey("dynamodb".into()),
            })
        }
        "AWS::SecretsManager::Secret" => Some(match text(&p["KmsKeyId"]) {
            Some(key) => resource_of(template, &key),
            None => Resource::ManagedKey("secretsmanager".into()),
        }),
        "AWS::SQS::Queue" => text(&p["KmsMasterKeyId"]).map(|key| resource_of(template, &key)),
        _ => None,
    }
}

/// Every request AWS authorises for `call`.
pub fn requests(template: &Yaml, names: &Names, call: &AwsCall) -> Vec<Request> {
    let (service, operation) = call.operation.split_once(':').unwrap_or(("", ""));
    let mut resources: Vec<Resource> = call
        .resources
        .iter()
        .map(|r| names.resolve(template, r))
        .collect();
    if resources.is_empty() {
        resources.push(Resource::Unknown(String::new()));
    }
    let mut out = Vec::new();
    for resource in &resources {
        let mut context = BTreeMap::new();
        if service == "dynamodb" && !call.leading_keys.is_empty() {
            context.insert("dynamodb:LeadingKeys".to_owned(), call.leading_keys.clone());
        }
        if service == "kms" && !call.encryption_context.is_empty() {
            let pairs: Vec<(&str, String)> = call
                .encryption_context
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            context = with_encryption_context(context, &pairs);
        }
        for action in &call.iam_actions {
            out.push(Request {
                action: action.clone(),
                resource: resource.clone(),
                context: context.clone(),
                why: format!("the function's {}", call.operation),
            });
        }
        let Resource::Logical(logical) = resource else {
            continue;
        };
        let Some(key) = encryption_key(template, logical) else {
            continue;
        };
        let implied: Vec<(&str, BTreeMap<String, Vec<String>>)> = match service {
            "dynamodb" if DYNAMODB_ITEM_CALLS.contains(&operation) => vec![(
                "kms:Decrypt",
                with_encryption_context(
                    service_context("dynamodb"),
                    &[
                        ("aws:dynamodb:tableName", logical.clone()),
                        ("aws:dynamodb:subscriberId", ACCOUNT.to_owned()),
                    ],
                ),
            )],
            "secretsmanager" if operation == "GetSecretValue" => vec![(
                "kms:Decrypt",
                with_encryption_context(
                    service_context("secretsmanager"),
                    &[
                        ("SecretARN", logical.clone()),
                        ("SecretVersionId", "v1".to_owned()),
                    ],
                ),
            )],
            "sqs" if operation.starts_with("SendMessage") => {
                let ctx = with_encryption_context(
                    service_context("sqs"),
                    &[("aws:sqs:arn", logical.clone())],
                );
                vec![("kms:GenerateDataKey", ctx.clone()), ("kms:Decrypt", ctx)]
            }
            "sqs" if operation.starts_with("ReceiveMessage") => vec![(
                "kms:Decrypt",
                with_encryption_context(
                    service_context("sqs"),
                    &[("aws:sqs:arn", logical.clone())],
                ),
            )],
            _ => vec![],
        };
        for (action, context) in implied {
            out.push(Request {
                action: action.to_owned(),
                resource: key.clone(),
                context,
                why: format!(
                    "{service} using {logical}'s key for the function's {}",
                    call.operation
                ),
            });
        }
    }
    out
}

/// One statement of a role, its resources and conditions resolved.
struct Statement {
    allow: bool,
    actions: Vec<String>,
    /// `None`: every resource (`*`).
    resources: Option<Vec<Resource>>,
    conditions: Yaml,
}

fn statements(template: &Yaml, f: &Function) -> Vec<Statement> {
    let mut out = Vec::new();
    for policy in list(&f.policies) {
        for (name, body) in entries(&policy) {
            if name == "Statement" {
                for st in list(&body) {
                    let resources = list(&st["Resource"])
                        .iter()
                        .filter_map(text)
                        .collect::<Vec<_>>();
                    out.push(Statement {
                        allow: st["Effect"].as_str() == Some("Allow"),
                        actions: list(&st["Action"]).iter().filter_map(text).collect(),
                        resources: (!resources.iter().any(|r| r == "*"))
                            .then(|| resources.iter().map(|r| resource_of(template, r)).collect()),
                        conditions: st["Condition"].clone(),
                    });
                }
            } else {
                // A SAM policy template: its actions on the resource its
                // parameter names (a table's indexes go with the table).
                let target = entries(&body)
                    .into_iter()
                    .find_map(|(_, v)| text(&v))
                    .map(|v| {
                        let logical = resolve_value(&v);
                        let logical = logical.split('.').next().unwrap_or("").to_owned();
                        resource_of(template, &logical)
                    });
                out.push(Statement {
                    allow: true,
                    actions: sam_policy(&name).into_iter().map(str::to_owned).collect(),
                    resources: target.map(|t| vec![t]),
                    conditions: Yaml::BadValue,
                });
            }
        }
    }
    out
}

/// IAM's wildcard match (`*` any run, `?` one character), case-sensitive as
/// for condition values (actions are matched lower-cased by the caller).
fn glob(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v)
}

/// Whether every condition of a statement holds for `context`. An operator
/// the model does not know fails loudly rather than passing.
fn conditions_hold(conditions: &Yaml, context: &BTreeMap<String, Vec<String>>) -> bool {
    entries(conditions).into_iter().all(|(operator, keys)| {
        entries(&keys).into_iter().all(|(key, wanted)| {
            let wanted: Vec<String> = list(&wanted)
                .iter()
                .filter_map(text)
                .map(|w| resolve_value(&w))
                .collect();
            let got = context.get(&key);
            let equals = |v: &String| wanted.iter().any(|w| w == v);
            let like = |v: &String| wanted.iter().any(|w| glob(w, v));
            match operator.as_str() {
                "StringEquals" | "Bool" => got.is_some_and(|g| g.len() == 1 && equals(&g[0])),
                "StringLike" => got.is_some_and(|g| g.len() == 1 && like(&g[0])),
                "StringNotEquals" => got.is_none_or(|g| !g.iter().any(equals)),
                "ForAllValues:StringEquals" => got.is_none_or(|g| g.iter().all(equals)),
                "ForAllValues:StringLike" => got.is_none_or(|g| g.iter().all(like)),
                "ForAnyValue:StringEquals" => got.is_some_and(|g| g.iter().any(equals)),
                "ForAnyValue:StringLike" => got.is_some_and(|g| g.iter().any(like)),
                "Null" => {
                    let absent = got.is_none();
                    wanted.iter().all(|w| (w == "true") == absent)
                }
                other => panic!("the IAM model does not know the condition operator {other}"),
            }
        })
    })
}

fn matches(st: &Statement, request: &Request) -> bool {
    st.actions.iter().any(|a| {
        glob(
            &a.to_ascii_lowercase(),
            &request.action.to_ascii_lowercase(),
        )
    }) && st
        .resources
        .as_ref()
        .is_none_or(|rs| rs.contains(&request.resource))
        && conditions_hold(&st.conditions, &request.context)
}

/// Whether a customer key's policy defers to IAM (the account may administer it).
fn key_defers_to_iam(template: &Yaml, logical: &str) -> bool {
    list(&template["Resources"][logical]["Properties"]["KeyPolicy"]["Statement"])
        .iter()
        .any(|st| {
            st["Effect"].as_str() == Some("Allow")
                && text(&st["Principal"]["AWS"]).is_some_and(|p| p.ends_with(":root"))
                && list(&st["Action"])
                    .iter()
                    .any(|a| a.as_str() == Some("kms:*"))
        })
}

/// Whether AWS would allow `request` for `f`'s role; `Err` says why not.
pub fn authorize(template: &Yaml, f: &Function, request: &Request) -> Result<(), String> {
    let deny = |why: &str| {
        Err(format!(
            "{} ({}) needs {} on {:?} with {:?}: {why}",
            f.logical, request.why, request.action, request.resource, request.context
        ))
    };
    if let Resource::ManagedKey(service) = &request.resource {
        // An AWS managed key's policy: any principal of the account, through
        // its service only. IAM policies cannot widen it.
        let via = format!("{service}.{REGION}.amazonaws.com");
        return match request.context.get("kms:ViaService") {
            Some(v) if v == &[via] => Ok(()),
            _ => deny("an AWS managed key is usable only through its service"),
        };
    }
    if request.action.starts_with("kms:")
        && let Resource::Logical(key) = &request.resource
        && !key_defers_to_iam(template, key)
    {
        return deny("the key's policy does not let IAM policies grant its use");
    }
    let statements = statements(template, f);
    if statements
        .iter()
        .any(|st| !st.allow && matches(st, request))
    {
        return deny("an explicit Deny matches");
    }
    if statements.iter().any(|st| st.allow && matches(st, request)) {
        Ok(())
    } else {
        deny("no statement of the role allows it")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{functions, template};

    const TABLE: &str = "kpi-table-1";

    fn names(t: &Yaml) -> Names {
        let env = [
            ("KPI_STORE".to_owned(), format!("dynamodb:{TABLE}")),
            ("KPI_VAULT".to_owned(), "kms:key-1".to_owned()),
            (
                "KPI_SECRET_ID".to_owned(),
                "arn:aws:secretsmanager:us-east-1:1:secret:app".to_owned(),
            ),
        ];
        Names::from_env(t, &env)
    }

    fn call(operation: &str, resource: &str, context: &[(&str, &str)]) -> AwsCall {
        AwsCall {
            operation: operation.into(),
            iam_actions: vec![operation.into()],
            resources: vec![resource.into()],
            encryption_context: context
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            leading_keys: Vec::new(),
        }
    }

    #[test]
    fn the_pages_write_their_sessions_and_nothing_else() {
        let t = template();
        let write = |pk: &str| AwsCall {
            leading_keys: vec![pk.to_owned()],
            ..call("dynamodb:PutItem", TABLE, &[])
        };
        check(&t, "ui", &write("EPHEMERAL#session#abc")).expect("a session");
        let err = check(&t, "ui", &write("WS#acme")).unwrap_err();
        assert!(err.contains("dynamodb:PutItem"), "{err}");
        check(&t, "api", &write("WS#acme")).expect("the API writes workspaces");
    }

    fn check(t: &Yaml, binary: &str, call: &AwsCall) -> Result<(), String> {
        let fs = functions(t);
        let f = fs.iter().find(|f| f.binary == binary).expect(binary);
        let requests = requests(t, &names(t), call);
        assert!(!requests.is_empty());
        requests.iter().try_for_each(|r| authorize(t, f, r))
    }

    /// `template` without the statements of `logical`'s role that `drop` picks.
    fn without_statements(t: &Yaml, logical: &str, drop: impl Fn(&Yaml) -> bool) -> Yaml {
        let mut t = t.clone();
        let Yaml::Hash(root) = &mut t else { panic!() };
        let resources = root.get_mut(&Yaml::String("Resources".into())).unwrap();
        let Yaml::Hash(resources) = resources else {
            panic!()
        };
        let function = resources.get_mut(&Yaml::String(logical.into())).unwrap();
        let Yaml::Hash(function) = function else {
            panic!()
        };
        let Yaml::Hash(props) = function
            .get_mut(&Yaml::String("Properties".into()))
            .unwrap()
        else {
            panic!()
        };
        let Yaml::Array(policies) = props.get_mut(&Yaml::String("Policies".into())).unwrap() else {
            panic!()
        };
        for policy in policies.iter_mut() {
            if let Yaml::Hash(policy) = policy
                && let Some(Yaml::Array(statements)) =
                    policy.get_mut(&Yaml::String("Statement".into()))
            {
                statements.retain(|st| !drop(st));
            }
        }
        t
    }

    #[test]
    fn a_table_call_needs_the_table_keys_service_side_use() {
        let t = template();
        let get = call("dynamodb:GetItem", TABLE, &[]);
        check(&t, "api", &get).expect("the deployed role may read its table");
        check(&t, "ui", &get).expect("the pages may read the table");
        let put = call("dynamodb:PutItem", TABLE, &[]);
        check(&t, "sync-scheduler", &put).unwrap();

        // The table's key used through DynamoDB: nothing else grants it.
        let key_statement = |st: &Yaml| {
            list(&st["Action"])
                .iter()
                .any(|a| a.as_str() == Some("kms:Decrypt"))
                && text(&st["Condition"]["StringEquals"]["kms:ViaService"])
                    .is_some_and(|v| v.starts_with("dynamodb."))
        };
        let api = functions(&t)
            .into_iter()
            .find(|f| f.binary == "api")
            .unwrap();
        let cut = without_statements(&t, &api.logical, key_statement);
        let err = check(&cut, "api", &get).unwrap_err();
        assert!(err.contains("kms:Decrypt"), "{err}");
        assert!(err.contains("dynamodb"), "{err}");
    }

    #[test]
    fn the_vault_key_only_with_its_encryption_context() {
        let t = template();
        let ok = call(
            "kms:GenerateDataKey",
            "key-1",
            &[
                ("workspace", "acme"),
                ("integration", "i-1"),
                ("provider", "resend"),
            ],
        );
        check(&t, "api", &ok).unwrap();
        // No context, or a context of another shape, is refused.
        check(&t, "api", &call("kms:GenerateDataKey", "key-1", &[])).unwrap_err();
        check(
            &t,
            "api",
            &call("kms:Decrypt", "key-1", &[("aws:dynamodb:tableName", "x")]),
        )
        .unwrap_err();
        // The pages never seal or open credentials.
        check(&t, "ui", &ok).unwrap_err();
    }

    #[test]
    fn the_secret_is_opened_through_secrets_manager() {
        let t = template();
        let secret = "arn:aws:secretsmanager:us-east-1:1:secret:app";
        let read = call("secretsmanager:GetSecretValue", secret, &[]);
        for f in functions(&t) {
            check(&t, &f.binary, &read).unwrap_or_else(|e| panic!("{e}"));
        }
        let api = functions(&t)
            .into_iter()
            .find(|f| f.binary == "api")
            .unwrap();
        let cut = without_statements(&t, &api.logical, |st| {
            text(&st["Condition"]["StringEquals"]["kms:ViaService"])
                .is_some_and(|v| v.starts_with("secretsmanager."))
        });
        let err = check(&cut, "api", &read).unwrap_err();
        assert!(err.contains("secretsmanager"), "{err}");
    }

    #[test]
    fn conditions_and_wildcards() {
        assert!(glob("kms:generatedatakey*", "kms:generatedatakey"));
        assert!(glob("sqs:sendmessage*", "sqs:sendmessagebatch"));
        assert!(!glob("kms:decrypt", "kms:encrypt"));
        let ctx = BTreeMap::from([("k".to_owned(), vec!["a".to_owned(), "b".to_owned()])]);
        let y = |s: &str| yaml_rust2::YamlLoader::load_from_str(s).unwrap().remove(0);
        assert!(conditions_hold(
            &y("ForAllValues:StringEquals: {k: [a, b, c]}"),
            &ctx
        ));
        assert!(!conditions_hold(
            &y("ForAllValues:StringEquals: {k: [a]}"),
            &ctx
        ));
        assert!(
            conditions_hold(&y("ForAllValues:StringEquals: {x: [a]}"), &ctx),
            "vacuous"
        );
        assert!(!conditions_hold(&y("Null: {x: \"false\"}"), &ctx));
        assert!(conditions_hold(&y("Null: {k: \"false\"}"), &ctx));
        assert!(
            !conditions_hold(&y("StringEquals: {k: a}"), &ctx),
            "multi-valued"
        );
    }
}
