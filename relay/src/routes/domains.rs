//! `GET /v1/domains`: `mailroom check-domain` over HTTP, for a dashboard.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller};
use crate::domain_check::{self, Dns, Plan};
use crate::keys::ApiScope;

/// The report for every configured sending domain, or for `?domain=`
/// (one of them: the relay is not a DNS probe for arbitrary names). Needs
/// the `admin` scope; `503 dns_unavailable` when DNS doesn't answer.
pub async fn domains(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(ApiScope::Admin)?;
    let configured = Plan::configured_domains(&state.settings);
    let domains = match params.get("domain") {
        None => configured,
        Some(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if !configured.contains(&d) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_domain",
                    format!("{d} is not a sending domain of this relay (no [[dkim]] entry)"),
                )
                .field("domain"));
            }
            vec![d]
        }
    };
    let dns = Dns::new(&state.settings.dns_servers)
        .map_err(|e| ApiError::internal("setting up DNS", e.as_ref()))?;
    let mut reports = Vec::with_capacity(domains.len());
    for domain in &domains {
        let plan = Plan::from_settings(&state.settings, &state.accept.signers, domain, &[]);
        let report = domain_check::check(&dns, &plan).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "dns_unavailable",
                e.to_string(),
            )
        })?;
        reports.push(report);
    }
    Ok(Json(json!({ "domains": reports })))
}
