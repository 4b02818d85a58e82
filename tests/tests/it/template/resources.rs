//! Queues with dead-letter queues and room for retries, no fixed names, checkov's skips.

use kpi_tests::template::{entries, functions, list, template};
use yaml_rust2::Yaml;

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
