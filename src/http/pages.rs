//! The dashboard page and the health routes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use serde_json::json;

use super::AppState;

/// The dashboard: one self-contained page (no CDN), refreshing itself from the JSON and SVG
/// routes.
pub async fn dashboard() -> Html<&'static str> {
    Html(crate::render::DASHBOARD_HTML)
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness.not_ready_reason() {
        None => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason})),
        ),
    }
}
