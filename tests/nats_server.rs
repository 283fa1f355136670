//! The `nats-server` child guard itself.

use ackscope::nats_server::NatsServer;

#[test]
fn server_child_is_killed_and_its_directory_removed_on_drop() {
    let binary = std::path::PathBuf::from(
        std::env::var("ACKSCOPE_NATS_SERVER_LEGACY").unwrap_or("/usr/sbin/nats-server".into()),
    );
    let server = NatsServer::start(&binary, "").expect("server starts");
    let dir = server.dir().to_path_buf();
    let port = server.port();
    assert!(dir.join("server.conf").is_file());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(server);
    assert!(!dir.exists(), "temp dir removed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_bad_config_is_reported_with_the_server_log() {
    let binary = std::path::PathBuf::from(
        std::env::var("ACKSCOPE_NATS_SERVER_LEGACY").unwrap_or("/usr/sbin/nats-server".into()),
    );
    let err = NatsServer::start(&binary, "no_such_option {").unwrap_err();
    assert!(err.to_string().contains("exited during start-up"), "{err}");
}
