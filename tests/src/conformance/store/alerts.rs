//! Alert rules with their history, and the index of due reports.

use chrono::Duration;
use kpi_core::WorkspaceId;
use kpi_core::ports::Store;

use super::{now, scope};

pub async fn alert_rules_and_their_history<S: Store>(store: &S) {
    use kpi_core::alert::{AlertRule, AlertState, Comparison, Condition, Window};
    use kpi_core::ids::AlertId;
    use kpi_core::ports::store::{AlertDay, AlertEvent};
    let ws = scope("ws-alerts");
    let t = now();
    let rule = AlertRule {
        id: AlertId::new_time_ordered(),
        workspace: WorkspaceId::parse("ws-alerts").unwrap(),
        name: "Low sessions".into(),
        metric: kpi_core::Metric::new("ga4.sessions"),
        integration: None,
        condition: Condition::Threshold {
            comparison: Comparison::Below,
            threshold: 10.into(),
        },
        window: Window::Day,
        recipients: vec!["owner@example.com".into()],
        cooldown_hours: 24,
        notify_recovery: false,
        enabled: true,
        state: AlertState::default(),
        version: 0,
        created_at: t,
        updated_at: t,
    };
    let created = store.create_alert(&ws, &rule).await.unwrap();
    assert_eq!(created.version, 1);
    assert!(
        store
            .create_alert(&ws, &rule)
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(store.create_alert(&scope("ws-other"), &rule).await.is_err());
    assert_eq!(store.get_alert(&ws, rule.id).await.unwrap(), created);
    assert!(
        store
            .get_alert(&scope("ws-other"), rule.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let mut changed = created.clone();
    changed.state.firing = true;
    let updated = store.update_alert(&ws, &changed).await.unwrap();
    assert_eq!(updated.version, 2);
    assert!(
        store
            .update_alert(&ws, &changed)
            .await
            .unwrap_err()
            .is_conflict(),
        "a stale version loses"
    );
    assert_eq!(store.list_alerts(&ws).await.unwrap(), vec![updated.clone()]);
    assert!(
        store
            .list_alerts(&scope("ws-other"))
            .await
            .unwrap()
            .is_empty()
    );

    let event = |id: &str, at| AlertEvent {
        id: id.into(),
        rule: rule.id,
        workspace: WorkspaceId::parse("ws-alerts").unwrap(),
        kind: "fired".into(),
        days: vec![AlertDay {
            date: t.date_naive(),
            value: Some(5.into()),
            previous: None,
            change_percent: None,
        }],
        emailed: true,
        reason: None,
        at,
    };
    assert!(store.add_alert_event(&ws, &event("e1", t)).await.unwrap());
    assert!(
        !store
            .add_alert_event(&ws, &event("e1", t + Duration::seconds(5)))
            .await
            .unwrap(),
        "the same event once"
    );
    assert!(
        store
            .add_alert_event(&ws, &event("e2", t + Duration::minutes(1)))
            .await
            .unwrap()
    );
    let history = store.list_alert_events(&ws, rule.id, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec!["e2", "e1"]
    );
    assert!(
        store
            .list_alert_events(&scope("ws-other"), rule.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.delete_alert(&ws, rule.id).await.unwrap());
    assert!(!store.delete_alert(&ws, rule.id).await.unwrap());
    assert!(
        store
            .list_alert_events(&ws, rule.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn due_reports_come_from_an_index<S: Store>(store: &S) {
    let t = now();
    let (a, b, c) = (
        scope("ws-report-a"),
        scope("ws-report-b"),
        scope("ws-report-c"),
    );
    store
        .schedule_report(&a, Some(t - Duration::hours(1)))
        .await
        .unwrap();
    store
        .schedule_report(&b, Some(t + Duration::hours(1)))
        .await
        .unwrap();
    store.schedule_report(&c, Some(t)).await.unwrap();
    let due = |at| async move {
        store
            .due_reports(at, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|(ws, _)| ws.as_str().starts_with("ws-report-"))
            .map(|(ws, _)| ws.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        due(t).await,
        vec!["ws-report-a", "ws-report-c"],
        "earliest first, due at now included"
    );
    // Rescheduling moves the entry; unscheduling removes it.
    store
        .schedule_report(&a, Some(t + Duration::days(7)))
        .await
        .unwrap();
    store.schedule_report(&c, None).await.unwrap();
    assert!(due(t).await.is_empty());
    assert_eq!(due(t + Duration::hours(2)).await, vec!["ws-report-b"]);
    assert_eq!(
        due(t + Duration::days(8)).await,
        vec!["ws-report-b", "ws-report-a"]
    );
    assert_eq!(
        store
            .due_reports(t + Duration::days(8), 1)
            .await
            .unwrap()
            .len(),
        1,
        "limit"
    );
}
