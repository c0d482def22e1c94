//! `rediss://`: two chat nodes reach each other through a Redis that speaks only TLS and
//! authenticates its clients by certificate, made for the test with a private CA (`openssl`).

use std::{path::Path, process::Command};

use anyhow::Context;
use cluster_tests::{
    ChatNode, Client, chat_config,
    process::{free_port, target_dir},
    unique_key,
};
use serde_json::json;
use testcontainers_modules::{
    redis::Redis,
    testcontainers::{ImageExt, core::IntoContainerPort, runners::AsyncRunner},
};

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run openssl")?;
    anyhow::ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn certificates(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    )?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")?;
    for who in ["server", "client"] {
        let (key, csr, crt, ext) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.crt"),
            format!("{who}.ext"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
        )?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_crosses_nodes_through_a_redis_that_speaks_only_tls() -> anyhow::Result<()> {
    let dir = target_dir().join(unique_key("tls"));
    certificates(&dir)?;
    let file = |name: &str| std::fs::read(dir.join(name));
    let port = free_port()?;
    let _redis = Redis::default()
        .with_tag("7")
        .with_cmd([
            "redis-server",
            "--protected-mode",
            "no",
            "--port",
            "0",
            "--tls-port",
            "6379",
            "--tls-cert-file",
            "/tls/server.crt",
            "--tls-key-file",
            "/tls/server.key",
            "--tls-ca-cert-file",
            "/tls/ca.crt",
            "--tls-auth-clients",
            "yes",
        ])
        .with_copy_to("/tls/server.crt", file("server.crt")?)
        .with_copy_to("/tls/server.key", file("server.key")?)
        .with_copy_to("/tls/ca.crt", file("ca.crt")?)
        .with_mapped_port(port, 6379.tcp())
        .start()
        .await
        .context("starting redis:7 with TLS (scripts/test-env.sh prepares the image)")?;

    let url = format!("rediss://127.0.0.1:{port}");
    let key = unique_key("tls");
    let mut nodes = Vec::new();
    for i in 0..2 {
        let mut config = chat_config(&format!("tls-{i}"), Some(&url), &key);
        config.redis_tls_ca_file = Some(dir.join("ca.crt"));
        config.redis_tls_cert_file = Some(dir.join("client.crt"));
        config.redis_tls_key_file = Some(dir.join("client.key"));
        nodes.push(ChatNode::start(config).await?);
    }
    let mut alice =
        Client::connect(nodes[0].port, "/", json!({ "userId": "alice" }), json!(1)).await?;
    let mut bob = Client::connect(nodes[1].port, "/", json!({ "userId": "bob" }), json!(1)).await?;
    for client in [&mut alice, &mut bob] {
        let ack = client
            .emit_with_ack("join", &[json!({ "room": "secure" })])
            .await?;
        assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
    }
    let ack = alice
        .emit_with_ack(
            "message",
            &[json!({ "room": "secure", "text": "over TLS" })],
        )
        .await?;
    assert_eq!(ack[0]["ok"], json!(true), "{ack:?}");
    assert_eq!(bob.event("message").await?[0]["text"], json!("over TLS"));
    std::fs::remove_dir_all(&dir)?;
    println!("two nodes chatted through rediss:// with a private CA and client certificates");
    Ok(())
}
