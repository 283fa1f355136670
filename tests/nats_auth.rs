//! ackscope against servers that want credentials: user and password, a token, an nkey in a
//! server config with accounts, a user JWT in operator mode (`.creds`), TLS with a CA of the
//! test's own and client certificates. A wrong secret is a start-up error that does not repeat
//! the secret; the right one taps and joins as usual.

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
    an_nkey_user_of_an_account,
    a_user_jwt_in_operator_mode,
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

async fn an_nkey_user_of_an_account(generation: Generation) {
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let server = NatsServer::start_with(
        generation,
        &format!(
            "accounts {{ GAME {{ jetstream: enabled, users: [ {{ nkey: {} }} ] }} }}",
            user.public_key()
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let seed_file = |name: &str, key: &nkeys::KeyPair| {
        let path = dir.path().join(name);
        // As `nk -gen user` writes it, with the public key on a line of its own.
        std::fs::write(
            &path,
            format!("{}\n{}\n", key.seed().unwrap(), key.public_key()),
        )
        .unwrap();
        path.display().to_string()
    };
    let nkey = |path: &str| config(&server, &format!("[nats]\nnkey_file = {path:?}"));
    let wrong = seed_file("stranger.nk", &stranger);
    refused_without_the_secret(&nkey(&wrong), &stranger.seed().unwrap()).await;
    let garbage = dir.path().join("garbage.nk");
    std::fs::write(&garbage, "SUNOTASEED\n").unwrap();
    let err = taps::connect(
        &nkey(&garbage.display().to_string()).nats,
        Arc::new(ClientEvents::default()),
        false,
    )
    .await
    .expect_err("no seed in the file")
    .to_string();
    assert!(err.starts_with("cannot read nkey file"), "{err}");
    assert!(!err.contains("SUNOTASEED"), "{err}");

    let tapped = Tapped::start(nkey(&seed_file("ackscope.nk", &user))).await;
    let client = ConnectOptions::with_nkey(user.seed().unwrap())
        .connect(server.url())
        .await
        .unwrap();
    three_acks_are_joined(client, &tapped).await;
    tapped.stop().await;
}

/// A JWT of `claims` (`nats` holding the kind's own claims) about `subject`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{:X}", rand_id()),
        "iat": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let body = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let signature = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", b64(&signature))
}

/// A JWT id: unique enough within one test.
fn rand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A `.creds` file as `nsc` writes it: the user JWT, then its seed.
fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

async fn a_user_jwt_in_operator_mode(generation: Generation) {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "ops",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "GAME",
        serde_json::json!({"limits": unlimited, "type": "account", "version": 2}),
    );
    let user_nats = serde_json::json!({
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
        "type": "user", "version": 2,
    });
    let user_jwt = jwt(&account, &user.public_key(), "ackscope", user_nats.clone());
    // The server's own account, which JetStream needs in operator mode.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let server = NatsServer::start_with(
        generation,
        &format!(
            "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{ {sys}: {system_jwt}, {game}: {account_jwt} }}",
            sys = system.public_key(),
            game = account.public_key()
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    // A user the account never signed: refused.
    let forger = nkeys::KeyPair::new_account();
    let forged = file(
        "forged.creds",
        creds(
            &jwt(&forger, &user.public_key(), "x", user_nats),
            &user.seed().unwrap(),
        ),
    );
    let with = |path: &str| config(&server, &format!("[nats]\ncredentials_file = {path:?}"));
    refused_without_the_secret(&with(&forged), &user.seed().unwrap()).await;

    let good = file("ackscope.creds", creds(&user_jwt, &user.seed().unwrap()));
    let tapped = Tapped::start(with(&good)).await;
    let client = ConnectOptions::with_credentials_file(&good)
        .await
        .unwrap()
        .connect(server.url())
        .await
        .unwrap();
    three_acks_are_joined(client, &tapped).await;
    tapped.stop().await;
}
