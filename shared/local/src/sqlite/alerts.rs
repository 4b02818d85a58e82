//! Alert rules and their events: the `AlertStore`.

use async_trait::async_trait;
use kpi_core::ports::store::{AlertEvent, AlertStore};
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, Result, WorkspaceScope};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db_error, one_body, to_json};

#[async_trait]
impl AlertStore for SqliteStore {
    async fn create_alert(
        &self,
        scope: &WorkspaceScope,
        rule: &kpi_core::alert::AlertRule,
    ) -> Result<kpi_core::alert::AlertRule> {
        scope.check(&rule.workspace)?;
        let mut next = rule.clone();
        next.version = 1;
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO alerts (workspace, id, version, body) VALUES (?1, ?2, 1, ?3)",
                    params![next.workspace.as_str(), next.id.to_string(), to_json(&next)?],
                )
                .map_err(db_error)?;
            if n == 0 {
                return Err(Error::conflict("an alert rule with this id exists"));
            }
            Ok(next)
        })
        .await
    }

    async fn get_alert(
        &self,
        scope: &WorkspaceScope,
        id: kpi_core::ids::AlertId,
    ) -> Result<kpi_core::alert::AlertRule> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            one_body::<kpi_core::alert::AlertRule>(
                c,
                "SELECT body FROM alerts WHERE workspace = ?1 AND id = ?2",
                params![ws, id.to_string()],
            )?
            .ok_or_else(|| Error::not_found("alert rule not found"))
        })
        .await
    }

    async fn list_alerts(&self, scope: &WorkspaceScope) -> Result<Vec<kpi_core::alert::AlertRule>> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            let mut stmt = c
                .prepare("SELECT body FROM alerts WHERE workspace = ?1 ORDER BY id LIMIT 1000")
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![ws], |r| r.get::<_, String>(0))
                .map_err(db_error)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(serde_json::from_str(&row.map_err(db_error)?).map_err(|e| {
                    Error::internal("a stored alert rule is unreadable").with_source(e)
                })?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_alert(
        &self,
        scope: &WorkspaceScope,
        rule: &kpi_core::alert::AlertRule,
    ) -> Result<kpi_core::alert::AlertRule> {
        scope.check(&rule.workspace)?;
        let mut next = rule.clone();
        next.version = rule.version + 1;
        let expected = rule.version;
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE alerts SET version = ?1, body = ?2 WHERE workspace = ?3 AND id = ?4 AND version = ?5",
                    params![
                        next.version as i64,
                        to_json(&next)?,
                        next.workspace.as_str(),
                        next.id.to_string(),
                        expected as i64
                    ],
                )
                .map_err(db_error)?;
            if n == 1 {
                return Ok(next);
            }
            let exists: Option<i64> = c
                .query_row(
                    "SELECT 1 FROM alerts WHERE workspace = ?1 AND id = ?2",
                    params![next.workspace.as_str(), next.id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_error)?;
            Err(match exists {
                Some(_) => Error::conflict("the alert rule was changed by someone else; reload and try again"),
                None => Error::not_found("alert rule not found"),
            })
        })
        .await
    }

    async fn delete_alert(
        &self,
        scope: &WorkspaceScope,
        id: kpi_core::ids::AlertId,
    ) -> Result<bool> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            let n = tx
                .execute(
                    "DELETE FROM alerts WHERE workspace = ?1 AND id = ?2",
                    params![ws, id.to_string()],
                )
                .map_err(db_error)?;
            tx.execute(
                "DELETE FROM alert_events WHERE workspace = ?1 AND rule = ?2",
                params![ws, id.to_string()],
            )
            .map_err(db_error)?;
            tx.commit().map_err(db_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn add_alert_event(&self, scope: &WorkspaceScope, event: &AlertEvent) -> Result<bool> {
        scope.check(&event.workspace)?;
        let event = event.clone();
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO alert_events (workspace, rule, id, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        event.workspace.as_str(),
                        event.rule.to_string(),
                        event.id,
                        sortable_timestamp(event.at),
                        to_json(&event)?
                    ],
                )
                .map_err(db_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_alert_events(
        &self,
        scope: &WorkspaceScope,
        rule: kpi_core::ids::AlertId,
        limit: u32,
    ) -> Result<Vec<AlertEvent>> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT body FROM alert_events WHERE workspace = ?1 AND rule = ?2 ORDER BY at DESC, id DESC LIMIT ?3",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![ws, rule.to_string(), limit.clamp(1, 500)], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db_error)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(serde_json::from_str(&row.map_err(db_error)?).map_err(|e| {
                    Error::internal("a stored alert event is unreadable").with_source(e)
                })?);
            }
            Ok(out)
        })
        .await
    }
}
