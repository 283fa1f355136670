//! The HTTP API against its own OpenAPI document: schemathesis (PyPI) generates requests for
//! every operation from the document and checks each answer against it, on a live `serve`
//! with a real game's samples behind it.

use crate::support::{Generation, ServedGame, http_get, play, poll};

fn schemathesis() -> std::path::PathBuf {
    let path = std::path::PathBuf::from(
        std::env::var_os("ACKSCOPE_SCHEMATHESIS").unwrap_or_else(|| "schemathesis".into()),
    );
    assert!(
        std::process::Command::new(&path)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "schemathesis not found: run ./scripts/test.sh, which installs it from PyPI"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_openapi_document_and_none_is_a_5xx() {
    let tool = schemathesis();
    let _cpu = crate::support::CPU.lock().await;
    let game = ServedGame::start(Generation::Current).await;
    let addr = &game.addr;
    assert_eq!(play(&game.client, &game.consumer, 50).await, 0);
    poll(addr, "/api/v1/consumers", |status, body| {
        status == 200 && body.contains("srv-1")
    })
    .await;

    // The document names every data route, its answers' schemas generated from the types.
    let (status, document) = http_get(addr, "/api/v1/openapi.json").await.unwrap();
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&document).unwrap();
    for path in [
        "/api/v1/consumers",
        "/api/v1/report",
        "/api/v1/spikes",
        "/api/v1/heatmap/phase.svg",
        "/api/v1/heatmap/time.svg",
        "/api/v1/export",
    ] {
        assert!(document["paths"][path]["get"].is_object(), "{path}");
    }
    for schema in [
        "Report",
        "SpikeReport",
        "ConsumerSummary",
        "CauseFinding",
        "ErrorBody",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }

    let url = format!("http://{addr}/api/v1/openapi.json");
    // Its cache goes to a directory of its own, not the clone.
    let scratch = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(tool)
        .current_dir(scratch.path())
        .args([
            "run",
            &url,
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--workers",
            "1",
        ])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = report
        .lines()
        .find(|l| l.contains("generated"))
        .unwrap_or("?")
        .trim();
    eprintln!("schemathesis: {cases}");
}
