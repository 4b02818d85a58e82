//! The whole system in process, as the dev server runs it: real router, SQLite
//! store, local queue and key, and the sandbox standing in for the providers,
//! served on a free port. Clients talk real HTTP to it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kpi_app::Config;
use kpi_core::WorkspaceId;
use kpi_local::EnvSecrets;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::SecretString;

use crate::moto::{remove_dir, temp_dir};

pub const DEV_SECRET: &str = "test-dev-secret-0123456789";

pub struct TestApp {
    pub base: String,
    pub server: dev_server::DevServer,
    pub dir: PathBuf,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        remove_dir(&self.dir);
    }
}

impl TestApp {
    /// Starts the app with `extra` configuration on top of the test defaults.
    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        Self::spawn_with_plugins(extra, Vec::new()).await
    }

    /// Starts the app with more providers registered, through the registry's
    /// public API, before the router and the engine start.
    pub async fn spawn_with_plugins(
        extra: &[(&str, &str)],
        plugins: Vec<kpi_core::registry::Plugin>,
    ) -> Self {
        Self::spawn_serving(extra, plugins, dev_server::router).await
    }

    /// The same app serving only the `ui` function's router, as API Gateway
    /// hands it the pages' routes on AWS (the engine still runs beside it).
    pub async fn spawn_ui_function(extra: &[(&str, &str)]) -> Self {
        Self::spawn_serving(extra, Vec::new(), |server| {
            kpi_lambda::http_app(kpi_ui::ui_function(), server.state.clone())
        })
        .await
    }

    async fn spawn_serving(
        extra: &[(&str, &str)],
        plugins: Vec<kpi_core::registry::Plugin>,
        router: fn(&dev_server::DevServer) -> axum::Router,
    ) -> Self {
        let dir = temp_dir("kpi-app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut vars: HashMap<String, String> = [
            ("KPI_LISTEN", addr.to_string()),
            ("KPI_PUBLIC_URL", format!("http://{addr}")),
            (
                "KPI_STORE",
                format!("sqlite:{}", dir.join("kpi.db").display()),
            ),
            (
                "KPI_VAULT",
                format!("local:{}", dir.join("master.key").display()),
            ),
            ("KPI_AUTH_DEV_SECRET", DEV_SECRET.to_owned()),
            ("KPI_SANDBOX", "on".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let config = Config::from_lookup(
            move |n| vars.get(n).cloned(),
            kpi_app::Environment::Development,
        )
        .expect("test configuration");
        let mut server = dev_server::build(config, std::sync::Arc::new(EnvSecrets::default()))
            .await
            .expect("build app");
        if !plugins.is_empty() {
            let mut registry = (*server.state.registry).clone();
            for plugin in plugins {
                registry.register(plugin).expect("register a test provider");
            }
            server.state.registry = std::sync::Arc::new(registry);
        }
        let router = router(&server);
        dev_server::spawn_engine(&server);
        tokio::spawn(async move {
            let _ = axum_serve(listener, router).await;
        });
        Self {
            base: format!("http://{addr}"),
            server,
            dir,
        }
    }

    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A token for `sub` managing `workspaces`.
    pub fn token(&self, sub: &str, workspaces: &[&str], admin: bool) -> String {
        let ws: Vec<WorkspaceId> = workspaces
            .iter()
            .map(|w| WorkspaceId::parse(w).unwrap())
            .collect();
        kpi_app::auth::sign_dev_token(
            &SecretString::from(DEV_SECRET.to_owned()),
            sub,
            &ws,
            admin,
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    /// An HTTP client sending `Authorization: Bearer` for a user of `workspaces`,
    /// not following redirects.
    pub fn client_for(&self, workspaces: &[&str]) -> reqwest::Client {
        let mut headers = HeaderMap::new();
        let token = self.token("user-1", workspaces, false);
        headers.insert(
            reqwest::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        crate::client_builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Like [`Self::client_for`], for a user whose token carries `email`.
    pub fn client_with_email(&self, workspaces: &[&str], email: &str) -> reqwest::Client {
        let ws: Vec<WorkspaceId> = workspaces
            .iter()
            .map(|w| WorkspaceId::parse(w).unwrap())
            .collect();
        let token = kpi_app::auth::sign_dev_token_with_email(
            &SecretString::from(DEV_SECRET.to_owned()),
            "user-2",
            &ws,
            false,
            Some(email),
            Duration::from_secs(3600),
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        crate::client_builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Connects `provider` (OAuth) for `ws` through the sandbox's consent
    /// page, as a signed-in browser would; returns the new integration's id.
    pub async fn connect(&self, ws: &str, provider: &str) -> String {
        let browser = self.browser();
        crate::flows::dev_login(&browser, &self.base, ws).await;
        let back = crate::flows::consent(
            &browser,
            &self.base,
            provider,
            &format!("workspace={ws}"),
            "allow",
            true,
        )
        .await;
        let (_, pairs, _) = crate::flows::finish(&browser, &self.base, &back.callback).await;
        crate::flows::param(&pairs, "integration")
            .expect("connected")
            .to_owned()
    }

    /// Connects GA4 for `ws` through the sandbox's Google consent; the new
    /// integration's id.
    pub async fn connect_ga4(&self, ws: &str) -> String {
        self.connect(ws, "ga4").await
    }

    /// Connects Meta Ads for `ws` through the sandbox's Facebook Login; the
    /// new integration's id.
    pub async fn connect_meta(&self, ws: &str) -> String {
        self.connect(ws, "meta_ads").await
    }

    /// Connects Resend with `key` in `ws` (as `c`) and gives it the sandbox's
    /// sender address; the created integration as the API answered it.
    pub async fn connect_resend(
        &self,
        c: &reqwest::Client,
        ws: &str,
        key: &str,
    ) -> serde_json::Value {
        let created: serde_json::Value = c
            .post(self.url(&format!("/v1/workspaces/{ws}/integrations")))
            .json(&serde_json::json!({"provider": "resend", "api_key": key}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"));
        let patched = c
            .patch(self.url(&format!("/v1/workspaces/{ws}/integrations/{id}")))
            .json(&serde_json::json!({"settings": {"from_address": "kpi@sandbox.example.com"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200);
        created
    }

    /// The jobs of integration `id` of `ws` (as `c`), newest first, once
    /// there are at least `n` and all of them ended (succeeded or dead).
    pub async fn wait_for_jobs(
        &self,
        c: &reqwest::Client,
        ws: &str,
        id: &str,
        n: usize,
    ) -> Vec<serde_json::Value> {
        let url = self.url(&format!("/v1/workspaces/{ws}/integrations/{id}/jobs"));
        let mut items = Vec::new();
        for _ in 0..200 {
            let jobs = crate::get_json(c, &url).await;
            items = jobs["items"].as_array().cloned().unwrap_or_default();
            if items.len() >= n
                && items
                    .iter()
                    .all(|j| j["status"] == "succeeded" || j["status"] == "dead")
            {
                return items;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // What each job was doing says which step stalled.
        let seen: Vec<_> = items
            .iter()
            .map(|j| (&j["status"], &j["attempts"], &j["last_error"]))
            .collect();
        panic!("jobs of {id} did not finish: {seen:?}");
    }

    /// The newest job of integration `id` once every job of it ended.
    pub async fn wait_for_job(&self, c: &reqwest::Client, ws: &str, id: &str) -> serde_json::Value {
        self.wait_for_jobs(c, ws, id, 1).await.remove(0)
    }

    /// A "browser": keeps cookies, does not follow redirects.
    pub fn browser(&self) -> reqwest::Client {
        crate::client_builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub fn sandbox(&self) -> &kpi_sandbox::Sandbox {
        self.server.sandbox.as_ref().expect("sandbox on")
    }
}

async fn axum_serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> std::io::Result<()> {
    axum::serve(listener, router).await
}
