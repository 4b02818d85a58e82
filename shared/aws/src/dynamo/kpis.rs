//! The DynamoDB `KpiStore`: KPI points by workspace, metric and date.

use std::collections::HashMap;

use async_trait::async_trait;
use kpi_core::ports::store::{KpiQuery, KpiStore};
use kpi_core::{KpiPoint, Result, WorkspaceScope};

use super::DynamoStore;
use super::items::*;
use crate::error::aws_error;

#[async_trait]
impl KpiStore for DynamoStore {
    async fn upsert_kpis(&self, scope: &WorkspaceScope, points: &[KpiPoint]) -> Result<usize> {
        // One batch may not hold the same key twice: the last point of a key wins,
        // as it would with sequential writes.
        let mut by_key: HashMap<(String, String), Item> = HashMap::new();
        for p in points {
            scope.check(&p.workspace)?;
            let item = kpi_item(p)?;
            let key = (
                get_s(&item, PK).unwrap_or_default().to_owned(),
                get_s(&item, SK).unwrap_or_default().to_owned(),
            );
            by_key.insert(key, item);
        }
        self.batch_put(by_key.into_values().collect()).await?;
        Ok(points.len())
    }

    async fn query_kpis(&self, scope: &WorkspaceScope, query: &KpiQuery) -> Result<Vec<KpiPoint>> {
        let pk = kpi_pk(scope.workspace().as_str(), query.metric.as_str());
        let mut points = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :lower AND :upper")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":lower", s(format!("{}#", query.from)))
                .expression_attribute_values(":upper", s(format!("{}#~", query.to)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| aws_error("DynamoDB Query", e))?;
            for item in out.items() {
                let p: KpiPoint = body(item)?;
                if query.integration.is_none_or(|i| i == p.integration) {
                    points.push(p);
                }
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(points);
            }
        }
    }
}
