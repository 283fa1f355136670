//! ackscope against servers that want credentials: user and password, a token, TLS with a CA
//! of the test's own and client certificates. A wrong secret is a start-up error that does not
//! repeat the secret; the right one taps and joins as usual.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::ConnectOptions;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use ackscope::config::Config;
use ackscope::service::taps;
use ackscope::telemetry::ClientEvents;

use crate::support::{Generation, NatsServer, Tapped, config, game_stream, play, pull_consumer};

both_generations!(
    user_password_and_token_are_used_and_kept_secret,
    tls_with_a_private_ca_and_client_certificates,
);

/// Plays three messages through consumer `srv-1` with `client` and waits for ackscope's samples.
async fn three_acks_are_joined(client: async_nats::Client, tapped: &Tapped) {
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
    assert_eq!(play(&client, &consumer, 3).await, 0);
    tapped.wait_for("three samples", |c| c.samples == 3).await;
}

/// Connecting with `config` fails, and the error does not carry `secret`.
async fn refused_without_the_secret(config: &Config, secret: &str) {
    let err = taps::connect(&config.nats, Arc::new(ClientEvents::default()), false)
        .await
        .expect_err("a wrong or missing secret is refused")
        .to_string();
    assert!(err.starts_with("cannot connect to NATS"), "{err}");
    assert!(!err.contains(secret), "{err}");
}

async fn user_password_and_token_are_used_and_kept_secret(generation: Generation) {
    let password = "pass-0123456789";
    let server = NatsServer::start_with(
        generation,
        &format!("authorization {{ user: ackscope, password: \"{password}\" }}"),
    );
    let wrong = config(
        &server,
        "[nats]\nuser = \"ackscope\"\npassword = \"wrong-0123456789\"",
    );
    refused_without_the_secret(&wrong, "wrong-0123456789").await;
    // The same in the URL: the error names the server, not the password.
    let mut in_url = config(&server, "");
    in_url.nats.urls = vec![
        server
            .url()
            .replace("nats://", "nats://ackscope:wrong-0123456789@"),
    ];
    refused_without_the_secret(&in_url, "wrong-0123456789").await;
    let right = config(
        &server,
        &format!("[nats]\nuser = \"ackscope\"\npassword = \"{password}\""),
    );
    assert!(!format!("{right:?}").contains(password));
    let tapped = Tapped::start(right).await;
    let client = ConnectOptions::with_user_and_password("ackscope".into(), password.into())
        .connect(server.url())
        .await
        .unwrap();
    three_acks_are_joined(client, &tapped).await;
    tapped.stop().await;

    let token = "token-0123456789abcdef";
    let server = NatsServer::start_with(
        generation,
        &format!("authorization {{ token: \"{token}\" }}"),
    );
    refused_without_the_secret(
        &config(&server, "[nats]\ntoken = \"not-the-token-0123\""),
        "not-the-token",
    )
    .await;
    let tapped = Tapped::start(config(&server, &format!("[nats]\ntoken = \"{token}\""))).await;
    let client = ConnectOptions::with_token(token.into())
        .connect(server.url())
        .await
        .unwrap();
    three_acks_are_joined(client, &tapped).await;
    tapped.stop().await;
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn certificates(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, names) in [
        ("server", vec!["127.0.0.1".to_string(), "localhost".into()]),
        ("client", vec!["ackscope".into()]),
    ] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

async fn tls_with_a_private_ca_and_client_certificates(generation: Generation) {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let server = NatsServer::start_with(
        generation,
        &format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}",
            path("server.pem"),
            path("server-key.pem"),
            path("ca.pem")
        ),
    );
    let tls = format!(
        "[nats]\ntls_required = true\ntls_ca_file = {:?}\n",
        path("ca.pem")
    );
    // The server wants a client certificate: without one, no connection.
    refused_without_the_secret(&config(&server, &tls), "PRIVATE KEY").await;
    let mutual = format!(
        "{tls}tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        path("client.pem"),
        path("client-key.pem")
    );
    let tapped = Tapped::start(config(&server, &mutual)).await;
    let client = ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(path("ca.pem").into())
        .add_client_certificate(path("client.pem").into(), path("client-key.pem").into())
        .connect(server.url())
        .await
        .unwrap();
    three_acks_are_joined(client, &tapped).await;
    tapped.stop().await;
}
