//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    admin, alerts, integrations, kpis, notifications, oauth, problem, providers, reports, system,
    unsubscribe, views, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "KPI Integrations API", description = "Connect GA4, Meta Ads and Resend; read KPIs."),
    paths(
        system::healthz,
        providers::list,
        integrations::list,
        integrations::create,
        integrations::get,
        integrations::patch,
        integrations::delete,
        integrations::options,
        integrations::health,
        integrations::status,
        integrations::sync,
        integrations::jobs,
        kpis::query,
        alerts::list,
        alerts::create,
        alerts::get,
        alerts::patch,
        alerts::delete,
        alerts::events,
        alerts::test,
        reports::get,
        reports::put,
        reports::preview,
        notifications::get,
        notifications::put,
        notifications::suppressions,
        notifications::lift,
        unsubscribe::show,
        unsubscribe::unsubscribe,
        unsubscribe::show_confirmation,
        unsubscribe::confirm,
        oauth::start,
        oauth::callback,
        admin::jobs,
        admin::job,
        admin::queues,
        admin::retry,
        admin::redrive,
        webhooks::check,
        webhooks::delivery,
        webhooks::integration_delivery,
    ),
    components(
        schemas(problem::Problem, views::IntegrationView, views::IntegrationPage),
        responses(problem::ProblemResponse),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
