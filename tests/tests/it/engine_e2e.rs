//! The sync engine inside the dev server: "sync now" end to end, and the
//! operators' API.

use kpi_tests::app::TestApp;
use serde_json::{Value, json};

async fn resend_integration(app: &TestApp, c: &reqwest::Client) -> String {
    let created = app.connect_resend(c, "demo", "re_live_123456789").await;
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sync_now_runs_through_queue_worker_and_store() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);
    let id = resend_integration(&app, &c).await;
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Duration::days(2);
    let resp = c
        .post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .json(&json!({"from": from, "to": today}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let jobs = app.wait_for_jobs(&c, "demo", &id, 1).await;
    assert_eq!(jobs[0]["status"], "succeeded");
    // Three days of zeros (nothing sent yet): four counts a day, no rate.
    assert_eq!(jobs[0]["rows_written"], 12);
    assert_eq!(
        jobs[0]["provider_calls"], 0,
        "counted from the sends recorded here"
    );
    let series: Value = kpi_tests::get_json(
        &c,
        app.url(&format!(
            "/v1/workspaces/demo/kpis?metric=resend.sent&from={from}&to={today}"
        )),
    )
    .await;
    assert_eq!(series["points"].as_array().unwrap().len(), 3);
    let status: Value = kpi_tests::get_json(
        &c,
        app.url(&format!("/v1/workspaces/demo/integrations/{id}/status")),
    )
    .await;
    assert!(status["last_success_at"].is_string());
}

#[tokio::test]
async fn the_admin_api_is_for_platform_admins() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);
    let id = resend_integration(&app, &c).await;
    c.post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .send()
        .await
        .unwrap();
    let jobs = app.wait_for_jobs(&c, "demo", &id, 1).await;
    let job_id = jobs[0]["id"].as_str().unwrap().to_owned();

    // Not an operator: every admin route is "not there".
    for path in ["/v1/admin/sync-jobs", "/v1/admin/queues"] {
        assert_eq!(c.get(app.url(path)).send().await.unwrap().status(), 404);
    }
    assert_eq!(
        c.post(app.url("/v1/admin/dlq/resend/redrive"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let admin = kpi_tests::client_builder()
        .default_headers({
            let mut h = reqwest::header::HeaderMap::new();
            let token = app.token("operator", &[], true);
            h.insert("authorization", format!("Bearer {token}").parse().unwrap());
            h
        })
        .build()
        .unwrap();
    let listed: Value = kpi_tests::get_json(
        &admin,
        app.url("/v1/admin/sync-jobs?status=succeeded&provider=resend&workspace=demo"),
    )
    .await;
    assert_eq!(listed["items"][0]["id"], job_id.as_str());
    assert_eq!(listed["items"][0]["workspace"], "demo");
    let none: Value = kpi_tests::get_json(&admin, app.url("/v1/admin/sync-jobs?status=dead")).await;
    assert!(none["items"].as_array().unwrap().is_empty());
    assert_eq!(
        admin
            .get(app.url("/v1/admin/sync-jobs?status=done"))
            .send()
            .await
            .unwrap()
            .status(),
        422
    );

    let queues: Value = kpi_tests::get_json(&admin, app.url("/v1/admin/queues")).await;
    assert_eq!(queues.as_array().unwrap().len(), 3);

    let resp = admin
        .post(app.url(&format!("/v1/admin/sync-jobs/{job_id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409, "a succeeded job is not retried");
    let resp = admin
        .post(app.url(&format!(
            "/v1/admin/sync-jobs/{}/retry",
            uuid::Uuid::now_v7()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let report: Value = admin
        .post(app.url("/v1/admin/dlq/resend/redrive"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["jobs_requeued"], 0);
    assert_eq!(
        admin
            .post(app.url("/v1/admin/dlq/hubspot/redrive"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn ga4_connect_pick_a_property_sync_and_read_the_sandbox_numbers() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    kpi_tests::flows::dev_login(&browser, &app.base, "demo").await;
    let back =
        kpi_tests::flows::consent(&browser, &app.base, "ga4", "workspace=demo", "allow", true)
            .await;
    let (_, pairs, _) = kpi_tests::flows::finish(&browser, &app.base, &back.callback).await;
    let id = kpi_tests::flows::param(&pairs, "integration")
        .unwrap()
        .to_owned();
    let c = app.client_for(&["demo"]);
    let patched: Value = c
        .patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&json!({"settings": {"property": "properties/100001"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["status"], "connected");

    let (from, to) = ("2026-03-01", "2026-03-31");
    let resp = c
        .post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .json(&json!({"from": from, "to": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let jobs = app.wait_for_jobs(&c, "demo", &id, 1).await;
    assert_eq!(
        jobs[0]["status"], "succeeded",
        "{:?}",
        jobs[0]["last_error"]
    );
    assert_eq!(
        jobs[0]["provider_calls"], 1,
        "one report call for the month"
    );
    assert_eq!(jobs[0]["rows_written"], 31 * 10);

    let series: Value = kpi_tests::get_json(
        &c,
        app.url(&format!(
            "/v1/workspaces/demo/kpis?metric=ga4.sessions&from={from}&to={to}"
        )),
    )
    .await;
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 31, "every day, zero days included");
    for p in points {
        let date =
            chrono::NaiveDate::parse_from_str(p["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        let served = kpi_sandbox::ga4_data::value("100001", date, "sessions").unwrap();
        assert_eq!(p["value"].as_str().unwrap(), served, "{date}");
    }
    // Syncing an overlapping window again overwrites instead of duplicating.
    c.post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .json(&json!({"from": "2026-03-20", "to": "2026-04-02"}))
        .send()
        .await
        .unwrap();
    app.wait_for_jobs(&c, "demo", &id, 2).await;
    let series: Value = kpi_tests::get_json(
        &c,
        app.url("/v1/workspaces/demo/kpis?metric=ga4.sessions&from=2026-03-01&to=2026-04-02"),
    )
    .await;
    assert_eq!(series["points"].as_array().unwrap().len(), 33);
}

#[tokio::test]
async fn a_revoked_google_grant_moves_ga4_to_needs_reauth_without_a_retry_storm() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    kpi_tests::flows::dev_login(&browser, &app.base, "demo").await;
    let back =
        kpi_tests::flows::consent(&browser, &app.base, "ga4", "workspace=demo", "allow", true)
            .await;
    let (_, pairs, _) = kpi_tests::flows::finish(&browser, &app.base, &back.callback).await;
    let id = kpi_tests::flows::param(&pairs, "integration")
        .unwrap()
        .to_owned();
    let c = app.client_for(&["demo"]);
    c.patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&json!({"settings": {"property": "properties/100002"}}))
        .send()
        .await
        .unwrap();
    app.sandbox().revoke_all_google_grants();
    let refreshes_before = app.sandbox().counters().google_refreshes;
    c.post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .json(&json!({"from": "2026-03-01", "to": "2026-03-02"}))
        .send()
        .await
        .unwrap();
    let jobs = app.wait_for_jobs(&c, "demo", &id, 1).await;
    assert_eq!(jobs[0]["status"], "dead");
    assert_eq!(jobs[0]["last_error"]["code"], "reauth_required");
    assert_eq!(jobs[0]["attempts"], 1, "no retries of a revoked grant");
    assert_eq!(
        app.sandbox().counters().google_refreshes - refreshes_before,
        1,
        "one refresh attempt"
    );
    let got: Value = kpi_tests::get_json(
        &c,
        app.url(&format!("/v1/workspaces/demo/integrations/{id}")),
    )
    .await;
    assert_eq!(got["status"], "needs_reauth");
    assert!(
        got["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("Reconnect")
    );
}

#[tokio::test]
async fn meta_connect_pick_an_ad_account_sync_and_read_roas_and_spend() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    kpi_tests::flows::dev_login(&browser, &app.base, "demo").await;
    let back = kpi_tests::flows::consent(
        &browser,
        &app.base,
        "meta_ads",
        "workspace=demo",
        "allow",
        true,
    )
    .await;
    let (_, pairs, _) = kpi_tests::flows::finish(&browser, &app.base, &back.callback).await;
    let id = kpi_tests::flows::param(&pairs, "integration")
        .unwrap()
        .to_owned();
    let c = app.client_for(&["demo"]);
    let closed = c
        .patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&json!({"settings": {"ad_account": "act_1000000003"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 422, "a closed ad account cannot be picked");
    let patched: Value = c
        .patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&json!({"settings": {"ad_account": "act_1000000001"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["status"], "connected", "{patched}");

    let (from, to) = ("2026-04-01", "2026-04-30");
    let resp = c
        .post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .json(&json!({"from": from, "to": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let jobs = app.wait_for_jobs(&c, "demo", &id, 1).await;
    assert_eq!(
        jobs[0]["status"], "succeeded",
        "{:?}",
        jobs[0]["last_error"]
    );
    assert_eq!(
        jobs[0]["provider_calls"], 1,
        "one insights call for the month"
    );

    let series = |metric: &str| {
        let c = c.clone();
        let url = app.url(&format!(
            "/v1/workspaces/demo/kpis?metric={metric}&from={from}&to={to}"
        ));
        async move { kpi_tests::get_json(&c, url).await }
    };
    let spend = series("meta.spend").await;
    let roas = series("meta.roas").await;
    let spend_points = spend["points"].as_array().unwrap();
    assert_eq!(
        spend_points.len(),
        30,
        "every day, days without delivery at zero"
    );
    let day = |p: &Value| {
        chrono::NaiveDate::parse_from_str(p["date"].as_str().unwrap(), "%Y-%m-%d").unwrap()
    };
    for p in spend_points {
        let served = kpi_sandbox::meta_insights::day("1000000001", day(p));
        let expected = served.as_ref().map_or("0", |d| d.spend.as_str());
        assert_eq!(
            p["value"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap(),
            expected.parse::<rust_decimal::Decimal>().unwrap(),
            "spend to the cent on {}",
            day(p)
        );
        assert_eq!(p["currency"], "EUR");
    }
    let roas_points = roas["points"].as_array().unwrap();
    let delivered = spend_points
        .iter()
        .filter(|p| kpi_sandbox::meta_insights::day("1000000001", day(p)).is_some())
        .count();
    assert_eq!(
        roas_points.len(),
        delivered,
        "no ROAS on days without spend"
    );
    for p in roas_points {
        let served = kpi_sandbox::meta_insights::day("1000000001", day(p)).unwrap();
        let expected = served
            .purchase_value
            .parse::<rust_decimal::Decimal>()
            .unwrap()
            / served.spend.parse::<rust_decimal::Decimal>().unwrap();
        assert_eq!(
            p["value"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap(),
            expected,
            "{}",
            day(p)
        );
    }
}
