//! The HTTP client the OTLP exporters send with: ureq (already ackscope's client for alerts),
//! blocking, on the exporters' own threads, counting every request and every failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

use super::OtlpStats;

/// Sends one OTLP request at a time; the exporter retries what fails (with backoff, up to its
/// timeout).
#[derive(Debug, Clone)]
pub struct UreqClient {
    agent: ureq::Agent,
    stats: Arc<OtlpStats>,
}

impl UreqClient {
    pub fn new(timeout: Duration, stats: Arc<OtlpStats>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Self { agent, stats }
    }

    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.stats.requests.fetch_add(1, Relaxed);
        let result = self
            .agent
            .run(request.map(|b| b.to_vec()))
            .map_err(HttpError::from)
            .and_then(|response| {
                let (parts, mut body) = response.into_parts();
                // A receiver's answer is a small status message: at most 1 MiB is read.
                let bytes = body
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(HttpError::from)?;
                Ok(Response::from_parts(parts, Bytes::from(bytes)))
            });
        let failed = match &result {
            Ok(r) => !r.status().is_success(),
            Err(_) => true,
        };
        if failed {
            self.stats.failed_requests.fetch_add(1, Relaxed);
        }
        result
    }
}

impl HttpClient for UreqClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        // The exporters call this from their own threads (the periodic reader's, the batch
        // processor's), never from the taps' runtime: blocking here blocks only them.
        let result = self.send(request);
        Box::pin(std::future::ready(result))
    }
}
