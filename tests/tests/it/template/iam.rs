//! The roles: the calls each function's adapters make, and the table key's use.

use std::collections::BTreeSet;

use kpi_tests::template::{
    allows, entries, functions, granted, granted_on, list, logical_id, root, statements, template,
};
use yaml_rust2::Yaml;

/// The AWS operations an adapter's source calls on its SDK client
/// (`.get_item()` → `GetItem`), read from the adapter's files.
fn operations(files: &[&str], known: &[&str]) -> BTreeSet<String> {
    let mut source = String::new();
    for f in files {
        let path = root().join(f);
        // A directory: every source file of it (a module split by responsibility).
        let paths: Vec<std::path::PathBuf> = if path.is_dir() {
            std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect()
        } else {
            vec![path]
        };
        assert!(!paths.is_empty(), "{f}: no source");
        for p in paths {
            source.push_str(&std::fs::read_to_string(p).unwrap());
        }
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
        &["shared/aws/src/dynamo/"],
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
