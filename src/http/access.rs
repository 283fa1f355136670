//! Who may call the API: the Host header against the allowed names (a page on another site
//! that rebinds its name to ackscope's address is refused), bearer tokens when configured, and
//! the headers every answer carries (no MIME sniffing; on the dashboard, a content security
//! policy that lets it talk to its own origin only).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::api::ErrorBody;
use crate::config::{AccessConfig, Secret};

/// The dashboard's policy: its own inline script and style, data from its own origin.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The host part of a Host header value: `[::1]:9464` → `[::1]`, `Example.org:80` →
/// `example.org`.
fn host_name(value: &str) -> String {
    let name = match value.strip_prefix('[') {
        // `[addr]` or `[addr]:port`; anything else after the `]` is not a host.
        Some(rest) => match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || after.starts_with(':') => {
                &value[..inside.len() + 2]
            }
            _ => value,
        },
        None => match value.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => value,
        },
    };
    name.to_ascii_lowercase()
}

fn host_allowed(access: &AccessConfig, headers: &HeaderMap) -> bool {
    if access.allowed_hosts.is_empty() || access.allowed_hosts.iter().any(|h| h == "*") {
        return true;
    }
    // No Host header: not a browser, so not a rebinding attack.
    let Some(value) = headers.get(header::HOST) else {
        return true;
    };
    let name = host_name(value.to_str().unwrap_or(""));
    access.allowed_hosts.contains(&name)
}

fn token_matches(given: &str, token: &Option<Secret>) -> bool {
    token
        .as_ref()
        .is_some_and(|t| bool::from(t.expose().as_bytes().ct_eq(given.as_bytes())))
}

/// Whether the request may read: no token configured, an open route, or a right token.
fn may_read(access: &AccessConfig, path: &str, headers: &HeaderMap) -> bool {
    if access.read_token.is_none() && access.admin_token.is_none() {
        return true;
    }
    // The page itself holds no data; it asks for the token when the API refuses it.
    if path == "/" || access.open_routes.iter().any(|r| r == path) {
        return true;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    given.is_some_and(|g| {
        token_matches(g, &access.read_token) | token_matches(g, &access.admin_token)
    })
}

fn refuse(status: StatusCode, error: &str) -> Response {
    let body = axum::Json(ErrorBody {
        error: error.to_string(),
        parameter: None,
    });
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ackscope\""),
        );
    }
    response
}

/// The middleware in front of every route.
pub async fn guard(
    State(access): State<Arc<AccessConfig>>,
    request: Request,
    next: Next,
) -> Response {
    if !host_allowed(&access, request.headers()) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this Host is not one ackscope answers to (config http.allowed_hosts)",
        );
    }
    let path = request.uri().path().to_string();
    if !may_read(&access, &path, request.headers()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a bearer token is needed (Authorization: Bearer <token>)",
        );
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if path == "/" {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DASHBOARD_CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_case() {
        for (value, name) in [
            ("localhost:9464", "localhost"),
            ("LocalHost", "localhost"),
            ("[::1]:9464", "[::1]"),
            ("[::1]", "[::1]"),
            ("[::1]evil.example", "[::1]evil.example"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("evil.example:9464", "evil.example"),
            ("a:b", "a:b"),
        ] {
            assert_eq!(host_name(value), name, "{value}");
        }
    }

    #[test]
    fn tokens_open_what_they_should() {
        let access = AccessConfig {
            read_token: Some(Secret::new("read-token-0123456789")),
            admin_token: Some(Secret::new("admin-token-0123456789")),
            open_routes: vec!["/healthz".into()],
            ..AccessConfig::default()
        };
        let with = |token: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, token.parse().unwrap());
            h
        };
        let none = HeaderMap::new();
        assert!(may_read(&access, "/healthz", &none));
        assert!(may_read(&access, "/", &none));
        assert!(!may_read(&access, "/api/v1/report", &none));
        assert!(!may_read(&access, "/metrics", &none));
        for good in [
            "Bearer read-token-0123456789",
            "Bearer admin-token-0123456789",
        ] {
            assert!(may_read(&access, "/api/v1/report", &with(good)), "{good}");
        }
        for bad in [
            "Bearer read-token-012345678",
            "Bearer read-token-01234567890",
            "read-token-0123456789",
            "Basic cmVhZA==",
            "Bearer ",
        ] {
            assert!(!may_read(&access, "/api/v1/report", &with(bad)), "{bad}");
        }
        let open = AccessConfig::default();
        assert!(may_read(&open, "/api/v1/report", &none));
    }
}
