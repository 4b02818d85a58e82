//! State kept safe, every function's log group, and an alarm on every failure.

use std::collections::BTreeSet;

use kpi_tests::template::{entries, functions, list, logical_id, root, template, text};
use yaml_rust2::Yaml;

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
