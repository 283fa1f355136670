//! The archive, with the real binary against a real server: a clean stop (SIGTERM) writes
//! every sample; `kill -9` loses at most what came after the last flush, and leaves nothing
//! torn behind; one process per data directory; foreign files skipped and named.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use polars::prelude::*;
use tokio::process::{Child, Command};

use crate::support::{
    Generation, NatsServer, free_addr, game_stream, http_get, play, poll, pull_consumer,
};

const BIN: &str = env!("CARGO_BIN_EXE_ackscope");

/// `ackscope serve` on `server` with its history in `data`, flushed every `flush`; ready.
async fn serve(server: &NatsServer, data: &Path, config: &Path, flush: &str) -> (Child, String) {
    serve_with(server, data, config, flush, "").await
}

/// [`serve`], the config file ending with `more`.
pub(crate) async fn serve_with(
    server: &NatsServer,
    data: &Path,
    config: &Path,
    flush: &str,
    more: &str,
) -> (Child, String) {
    std::fs::write(
        config,
        format!("[archive]\nflush_interval = \"{flush}\"\n{more}"),
    )
    .unwrap();
    let addr = free_addr();
    let child = Command::new(BIN)
        .args(["serve", "--nats", &server.url(), "--listen", &addr])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    poll(&addr, "/readyz", |status, _| status == 200).await;
    (child, addr)
}

/// A real server with a game stream and its pull consumer `srv-1`, and `ackscope serve` on it
/// with its history in a temporary data directory, flushed every `flush`.
pub(crate) struct Setup {
    pub server: NatsServer,
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub config: PathBuf,
    pub client: async_nats::Client,
    pub consumer: async_nats::jetstream::consumer::PullConsumer,
}

async fn setup(generation: Generation, flush: &str) -> (Setup, Child, String) {
    setup_with(generation, flush, "").await
}

/// [`setup`], the config file ending with `more`.
pub(crate) async fn setup_with(
    generation: Generation,
    flush: &str,
    more: &str,
) -> (Setup, Child, String) {
    let server = NatsServer::start(generation);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ackscope.toml");
    let (child, addr) = serve_with(&server, &data, &config, flush, more).await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
    let setup = Setup {
        server,
        dir,
        data,
        config,
        client,
        consumer,
    };
    (setup, child, addr)
}

/// A counter of ackscope's `/metrics`.
async fn counter(addr: &str, name: &str) -> u64 {
    let (_, text) = http_get(addr, "/metrics").await.unwrap();
    crate::support::metric(&text, name).unwrap_or(0.0) as u64
}

/// Waits until the counter `name` reaches `n`.
pub(crate) async fn counted(addr: &str, name: &str, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while counter(addr, name).await < n {
        if std::time::Instant::now() >= deadline {
            // Every counter that moved, to tell a missed delivery from a slow one.
            let (_, text) = http_get(addr, "/metrics").await.unwrap();
            let moved: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("ackscope_") && !l.ends_with(" 0"))
                .collect();
            panic!(
                "{name} did not reach {n}: {}\n{}",
                counter(addr, name).await,
                moved.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn signal(child: &Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn strings(df: &DataFrame, column: &str) -> Vec<String> {
    df.column(column)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_every_sample_legacy_2_9() {
    let (s, mut child, addr) = setup(Generation::Legacy, "1h").await;
    let Setup {
        data,
        client,
        consumer,
        ..
    } = &s;
    play(client, consumer, 200).await;
    // Every sample; the server may now and then hand ackscope an ack before its delivery
    // (the sample is kept, without an ack latency).
    counted(&addr, "ackscope_samples_total", 200).await;
    let reordered = counter(&addr, "ackscope_samples_reordered_total").await;
    assert!(
        reordered <= 2,
        "{reordered} acks came before their delivery"
    );
    // Nothing is written before the hour is up: every sample waits in the collector's batch
    // or with the writer, and is written by the stop.
    assert_eq!(
        counter(&addr, "ackscope_archive_samples_written_total").await,
        0
    );
    signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let (df, unreadable) = ackscope::archive::read_samples(data, i64::MIN, i64::MAX);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(df.height(), 200, "{df}");
    assert!(strings(&df, "stream").iter().all(|s| s == "GAME"));
    assert!(strings(&df, "consumer").iter().all(|s| s == "srv-1"));
    assert!(strings(&df, "subject").iter().all(|s| s == "game.srv-1"));
    assert!(strings(&df, "kind").iter().all(|s| s == "ack"));
    let column = |name: &str| df.column(name).unwrap().i64().unwrap().clone();
    // Every message once, its stream sequence and both instants kept.
    let mut seqs: Vec<i64> = column("stream_seq").no_null_iter().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
    let latencies = column("ack_latency_ns");
    assert_eq!(latencies.null_count() as u64, reordered);
    assert!(latencies.no_null_iter().all(|l| l > 0 && l < 5_000_000_000));
    let phases = column("phase_ns");
    assert!(phases.no_null_iter().all(|p| (0..16_000_000).contains(&p)));
    // Hive-style partitions by day and hour.
    let days: Vec<String> = std::fs::read_dir(data.join("samples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(days.iter().all(|d| d.starts_with("date=")), "{days:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_at_most_the_last_flush_current_2_15() {
    let (s, mut child, addr) = setup(Generation::Current, "1s").await;
    let Setup {
        server,
        data,
        config,
        client,
        consumer,
        ..
    } = &s;
    play(client, consumer, 100).await;
    // Written by a flush (at most a second later) ...
    counted(&addr, "ackscope_archive_samples_written_total", 100).await;
    assert!(counter(&addr, "ackscope_archive_segments_written_total").await >= 1);
    // A second ackscope on the same directory is refused, in words.
    let second = Command::new(BIN)
        .args(["serve", "--nats", &server.url(), "--listen", &free_addr()])
        .arg("--data-dir")
        .arg(data)
        .output()
        .await
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another ackscope"), "{err}");
    // ... then 50 more, and no time to write them.
    play(client, consumer, 50).await;
    signal(&child, "-KILL");
    child.wait().await.unwrap();
    let (df, unreadable) = ackscope::archive::read_samples(data, i64::MIN, i64::MAX);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert!((100..=150).contains(&df.height()), "{}", df.height());
    // Started again on the same directory: what the crash left is read, and it goes on.
    let (mut child, addr) = serve(server, data, config, "1s").await;
    play(client, consumer, 30).await;
    counted(&addr, "ackscope_archive_samples_written_total", 30).await;
    let (_, metrics) = http_get(&addr, "/metrics").await.unwrap();
    assert!(
        crate::support::metric(&metrics, "ackscope_archive_bytes").unwrap() > 0.0,
        "{metrics}"
    );
    signal(&child, "-TERM");
    child.wait().await.unwrap();
    let (after, unreadable) = ackscope::archive::read_samples(data, i64::MIN, i64::MAX);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(after.height(), df.height() + 30);
    // No temporary file is left anywhere.
    let mut found = Vec::new();
    let mut dirs = vec![data.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    assert!(
        found.iter().all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "{found:?}"
    );
    // A foreign or torn file in the data directory is skipped and named, never fatal.
    let segment =
        ackscope::archive::files::segments(data, ackscope::archive::files::Table::Samples)
            .pop()
            .unwrap();
    std::fs::write(&segment.path, b"torn").unwrap();
    let (rest, unreadable) = ackscope::archive::read_samples(data, i64::MIN, i64::MAX);
    assert_eq!(unreadable, vec![segment.path.clone()]);
    assert!(rest.height() < after.height());
    // So is a Parquet file of another table under a segment's name.
    let mut foreign = DataFrame::new(1, vec![Column::new("acked_ns".into(), ["late"])]).unwrap();
    let file = std::fs::File::create(&segment.path).unwrap();
    ParquetWriter::new(file).finish(&mut foreign).unwrap();
    let (same, unreadable) = ackscope::archive::read_samples(data, i64::MIN, i64::MAX);
    assert_eq!(unreadable, vec![segment.path]);
    assert_eq!(same.height(), rest.height());
}

/// The report of the last ten minutes, as JSON.
async fn report(addr: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, "/api/v1/report?from=-10m").await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_goes_on_from_the_archived_history_current_2_15() {
    let (s, mut child, addr) = setup(Generation::Current, "1h").await;
    let Setup {
        server,
        data,
        config,
        client,
        consumer,
        ..
    } = &s;
    play(client, consumer, 150).await;
    counted(&addr, "ackscope_samples_joined_total", 150).await;
    let before = report(&addr).await;
    assert_eq!(before["counts"]["acks"], 150, "{before:#}");
    signal(&child, "-TERM");
    child.wait().await.unwrap();
    // Started again on the same directory with nothing new: the same acks, latencies and
    // phases, and the consumer known.
    let (mut child, addr) = serve(server, data, config, "1h").await;
    assert_eq!(
        counter(&addr, "ackscope_archive_samples_restored_total").await,
        150
    );
    let after = report(&addr).await;
    assert_eq!(after["counts"]["acks"], 150, "{after:#}");
    assert_eq!(after["latency_us"], before["latency_us"]);
    let phase_counts = |r: &serde_json::Value| -> Vec<u64> {
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["count"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(phase_counts(&after), phase_counts(&before));
    let (_, consumers) = http_get(&addr, "/api/v1/consumers").await.unwrap();
    assert!(consumers.contains("srv-1"), "{consumers}");
    // New acks add to them, and what was loaded back is not archived twice.
    play(client, consumer, 20).await;
    counted(&addr, "ackscope_samples_joined_total", 20).await;
    assert_eq!(report(&addr).await["counts"]["acks"], 170);
    signal(&child, "-TERM");
    child.wait().await.unwrap();
    let (df, unreadable) = ackscope::archive::read_samples(data, i64::MIN, i64::MAX);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(df.height(), 170);
}

/// A GET of `addr` `path`: status and raw body.
fn get_bytes(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(format!("http://{addr}{path}")).call().unwrap();
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    (status, body)
}

/// The files of a bundle's tar.gz, by name.
fn untar(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        assert!(path.starts_with("postmortem"), "{path:?}");
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut body).unwrap();
        files.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            body,
        );
    }
    files
}

/// Checks a bundle's files: every one the contract names, `acks` samples in its tables, and
/// pictures that are pictures. Returns its report.
fn check_bundle(
    files: &std::collections::BTreeMap<String, Vec<u8>>,
    acks: u64,
) -> serde_json::Value {
    for name in [
        "postmortem.md",
        "report.json",
        "spikes.json",
        "phase.svg",
        "phase.png",
        "time.svg",
        "time.png",
        "samples.parquet",
        "samples.csv",
        "windows.csv",
    ] {
        assert!(
            files.contains_key(name),
            "{name} missing: {:?}",
            files.keys()
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&files["report.json"]).unwrap();
    assert_eq!(report["counts"]["acks"], acks, "{report:#}");
    let spikes: serde_json::Value = serde_json::from_slice(&files["spikes.json"]).unwrap();
    assert_eq!(spikes, report["spikes"]);
    for svg in ["phase.svg", "time.svg"] {
        let text = String::from_utf8(files[svg].clone()).unwrap();
        roxmltree::Document::parse(&text).unwrap();
        assert!(text.contains(&format!("{acks} samples")), "{svg}");
    }
    for png in ["phase.png", "time.png"] {
        let bytes = &files[png];
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        // Width and height in the IHDR chunk: the SVG's 960 × 540.
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), (960, 540), "{png}");
    }
    let parquet = ParquetReader::new(std::io::Cursor::new(files["samples.parquet"].clone()))
        .finish()
        .unwrap();
    assert_eq!(parquet.height() as u64, acks);
    let csv = String::from_utf8(files["samples.csv"].clone()).unwrap();
    assert_eq!(csv.lines().count() as u64, acks + 1);
    assert!(csv.starts_with("acked_ns,"), "{csv}");
    let windows = String::from_utf8(files["windows.csv"].clone()).unwrap();
    let header = windows.lines().next().unwrap();
    assert!(header.starts_with("start,end,stream,consumer,"), "{header}");
    // Every window's acks add up to the range's.
    let acks_column = header.split(',').position(|c| c == "acks").unwrap();
    let consumer_column = header.split(',').position(|c| c == "consumer").unwrap();
    let summed: u64 = windows
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|cells| cells[consumer_column] == "srv-1")
        .map(|cells| cells[acks_column].parse::<u64>().unwrap())
        .sum();
    assert_eq!(summed, acks, "{windows}");
    let md = String::from_utf8(files["postmortem.md"].clone()).unwrap();
    assert!(md.starts_with("# Ack latency postmortem"), "{md}");
    assert!(md.contains("| during |"), "{md}");
    report
}

/// `ackscope export ARGS --data-dir DATA --out OUT` from the data directory alone; it
/// succeeds.
async fn exported(args: Vec<std::ffi::OsString>, data: &Path, out: &Path) {
    let run = Command::new(BIN)
        .arg("export")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .await
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postmortem_bundle_from_the_service_and_from_the_data_directory_alone_legacy_2_9() {
    let from = ackscope::model::rfc3339(ackscope::model::Seen::now().wall_ns - 1_000_000_000);
    let (s, mut child, addr) = setup(Generation::Legacy, "1s").await;
    let Setup {
        dir,
        data,
        client,
        consumer,
        ..
    } = &s;
    play(client, consumer, 120).await;
    counted(&addr, "ackscope_archive_samples_written_total", 120).await;
    // Windows close a second after their last ack.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let to = ackscope::model::rfc3339(ackscope::model::Seen::now().wall_ns);
    let range = format!("from={from}&to={to}&stream=GAME&consumer=srv-1");
    let (status, body) = get_bytes(&addr, &format!("/api/v1/export?{range}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let live = check_bundle(&untar(&body), 120);
    // Bad parameters are a 400 in words, an unknown consumer a 404, and the widest range a
    // bundle (its sides beyond what an instant holds left out).
    let (status, body) = get_bytes(&addr, "/api/v1/export?from=yesterday");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = get_bytes(&addr, "/api/v1/export?stream=GAME&consumer=nobody");
    assert_eq!(status, 404);
    let (status, body) = get_bytes(
        &addr,
        "/api/v1/export?from=1970-01-01T00:00:00Z&to=2262-01-01T00:00:00Z",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let widest = untar(&body);
    let md = String::from_utf8(widest["postmortem.md"].clone()).unwrap();
    assert!(
        md.contains("| before (same length) | not available |"),
        "{md}"
    );
    // The command, asking the running service.
    let out = dir.path().join("asked");
    let asked = Command::new(BIN)
        .args([
            "export",
            "--url",
            &format!("http://{addr}"),
            "--from",
            &from,
            "--to",
            &to,
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .await
        .unwrap();
    assert!(
        asked.status.success(),
        "{}",
        String::from_utf8_lossy(&asked.stderr)
    );
    assert!(out.join("postmortem.md").is_file());
    signal(&child, "-TERM");
    child.wait().await.unwrap();
    // The data directory alone, the service gone: the same report, as a tar.gz.
    let out = dir.path().join("offline.tar.gz");
    let args = [
        "--from",
        &from,
        "--to",
        &to,
        "--stream",
        "GAME",
        "--consumer",
        "srv-1",
    ];
    exported(args.iter().map(Into::into).collect(), data, &out).await;
    let report = check_bundle(&untar(&std::fs::read(&out).unwrap()), 120);
    assert_eq!(report["latency_us"], live["latency_us"]);
    assert_eq!(report["phases"], live["phases"]);
    // Holding at most what the service would (a ring of 50 here): the report and the samples
    // are the latest 50, the heatmaps drawn from all 120 archived, and the bundle says so.
    let small = dir.path().join("small.toml");
    std::fs::write(&small, "[aggregate]\nring_capacity = 50\n").unwrap();
    let out = dir.path().join("small");
    let args = ["--from", &from, "--to", &to, "--config"];
    let mut args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    args.push(small.into());
    exported(args, data, &out).await;
    let svg = std::fs::read_to_string(out.join("phase.svg")).unwrap();
    assert!(svg.contains("120 samples"), "{svg}");
    assert!(svg.contains("drawn from every archived sample"));
    let md = std::fs::read_to_string(out.join("postmortem.md")).unwrap();
    assert!(md.contains("the latest 50"), "{md}");
    // A directory that holds no archive is an error in words, not an empty bundle.
    let missing = Command::new(BIN)
        .args(["export", "--from", "-1h", "--out"])
        .arg(dir.path().join("nothing"))
        .arg("--data-dir")
        .arg(dir.path().join("no-such-dir"))
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("no data directory"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_older_than_memory_is_answered_from_the_archive_as_memory_did_legacy_2_9() {
    // A ring of 100 samples: the first 80 acks leave memory once 150 more come.
    let (s, mut child, addr) = setup_with(
        Generation::Legacy,
        "1s",
        "[aggregate]\nring_capacity = 100\n",
    )
    .await;
    let Setup {
        client, consumer, ..
    } = &s;
    let from = ackscope::model::Seen::now().wall_ns - 1_000_000_000;
    play(client, consumer, 80).await;
    counted(&addr, "ackscope_archive_samples_written_total", 80).await;
    // The window of the last ack closes.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let to = ackscope::model::Seen::now().wall_ns;
    let range = format!(
        "from={}&to={}",
        ackscope::model::rfc3339(from),
        ackscope::model::rfc3339(to)
    );
    let get = |path: String| {
        let addr = addr.clone();
        async move {
            let (status, body) = http_get(&addr, &path).await.unwrap();
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    let json = |body: String| -> serde_json::Value { serde_json::from_str(&body).unwrap() };
    let memory = json(get(format!("/api/v1/report?{range}")).await);
    assert_eq!(memory["counts"]["acks"], 80, "{memory:#}");
    let warned = |r: &serde_json::Value| r["warnings"].to_string().contains("from the archive");
    assert!(!warned(&memory), "{memory:#}");
    play(client, consumer, 150).await;
    counted(&addr, "ackscope_samples_total", 230).await;
    let archived = json(get(format!("/api/v1/report?{range}")).await);
    assert!(warned(&archived), "{archived:#}");
    assert_eq!(archived["counts"]["acks"], 80, "{archived:#}");
    assert_eq!(archived["latency_us"], memory["latency_us"]);
    assert_eq!(archived["phases"], memory["phases"]);
    assert_eq!(archived["ordering"], memory["ordering"]);
    // The heatmaps of that range say where they came from, and hold its 80 samples.
    for picture in ["phase", "time"] {
        let svg = get(format!("/api/v1/heatmap/{picture}.svg?{range}")).await;
        assert!(svg.contains("from the archive"), "{picture}");
        assert!(svg.contains("80 samples"), "{picture}");
    }
    // A range holding more than the history collector takes (100): its heatmaps are drawn
    // from every archived sample, the same count as memory once took in.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let to_b = ackscope::model::Seen::now().wall_ns;
    play(client, consumer, 150).await;
    counted(&addr, "ackscope_archive_samples_written_total", 380).await;
    let both = format!(
        "from={}&to={}",
        ackscope::model::rfc3339(from),
        ackscope::model::rfc3339(to_b)
    );
    for picture in ["phase", "time"] {
        let svg = get(format!("/api/v1/heatmap/{picture}.svg?{both}")).await;
        assert!(svg.contains("every archived sample"), "{picture}");
        assert!(svg.contains("230 samples"), "{picture}");
        let one = get(format!(
            "/api/v1/heatmap/{picture}.svg?{both}&stream=GAME&consumer=srv-1&latency=e2e"
        ))
        .await;
        assert!(one.contains("230 samples"), "{picture}");
    }
    // A range reaching into what memory holds is answered from memory, which says what it
    // no longer holds.
    let straddling = json(
        get(format!(
            "/api/v1/report?from={}",
            ackscope::model::rfc3339(from)
        ))
        .await,
    );
    assert!(!warned(&straddling), "{straddling:#}");
    assert!(
        straddling["warnings"]
            .to_string()
            .contains("no longer retained"),
        "{straddling:#}"
    );
    // The live range is still answered from memory.
    let now = json(get("/api/v1/report?from=-200ms".to_string()).await);
    assert!(!warned(&now), "{now:#}");
    signal(&child, "-TERM");
    child.wait().await.unwrap();
}

/// `collect` with its archive on hands ended spikes to the `spikes` table as `serve` does: the
/// simulator pauses srv-2 60 ms every second from 7 s to 14 s, and after a clean stop the table
/// holds srv-2's spike, its cause `gc_pause`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_archives_ended_spikes_current_2_15() {
    use ackscope::sim::{self, scenario::RawScenario};

    let _loading = crate::support::CPU.lock().await;
    let server = NatsServer::start(Generation::Current);
    let client = server.client().await;
    let data = tempfile::tempdir().unwrap();
    let mut raw = ackscope::config::RawConfig::from_toml(&format!(
        "[archive]\nenabled = true\ndir = {:?}\n",
        data.path().join("data").display().to_string()
    ))
    .unwrap();
    raw.nats.urls = vec![server.url()];
    let config = raw.validate().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let collecting = tokio::spawn(ackscope::service::collect(config, |_, _| {}, async {
        let _ = stopped.await;
    }));
    // The taps subscribe before the simulator's first frame.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let scenario = RawScenario::from_toml(
        r#"
name = "collect-spikes"
seed = 5
duration = "17s"
[fleet]
servers = 3
tick = "16ms"
events_per_frame = 3
[[faults]]
kind = "gc_pause"
start = "7s"
duration = "7s"
servers = [2]
pause = "60ms"
every = "1s"
"#,
    )
    .unwrap()
    .validate()
    .unwrap();
    let (_keep, sim_stop) = tokio::sync::watch::channel(false);
    sim::run(client.clone(), scenario, sim_stop).await.unwrap();
    let _ = stop.send(());
    collecting.await.unwrap().unwrap();

    let answer = ackscope::archive::query::run(
        &data.path().join("data"),
        "SELECT consumer, top_cause FROM spikes",
        i64::MIN,
        i64::MAX,
    )
    .unwrap();
    let (consumers, causes) = (
        strings(&answer.frame, "consumer"),
        strings(&answer.frame, "top_cause"),
    );
    let srv2 = consumers.iter().position(|c| c == "srv-2");
    assert!(
        srv2.is_some_and(|i| causes[i] == "gc_pause"),
        "archived spikes: {consumers:?} {causes:?}"
    );
}
