//! An independent client: Python's `ssl` (OpenSSL) and `hmac` modules speak
//! the frame format to our server, then close with `unwrap()`
//! (`SSL_shutdown`), which fails unless the server answers `close_notify`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{KEY, pki};
use futures::{SinkExt, StreamExt};
use secure_link::SecureAcceptor;

const CLIENT: &str = r#"
import hashlib, hmac, socket, ssl, struct, sys
port, ca, key = int(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
for message in [b"hello from OpenSSL", b"", "ünïcode".encode()]:
    tag = hmac.new(key, message, hashlib.sha256).digest()
    sock.sendall(struct.pack(">I", len(message)) + message + tag)
def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "server closed early"
        data += chunk
    return data
# The server echoes the first message back, in the same format.
(length,) = struct.unpack(">I", read_exact(4))
payload, tag = read_exact(length), read_exact(32)
assert hmac.compare_digest(tag, hmac.new(key, payload, hashlib.sha256).digest()), "bad tag"
print("echo", payload.decode())
version = sock.version()
sock.unwrap()  # SSL_shutdown: sends close_notify, then waits for the server's
print("clean shutdown", version)
"#;

/// Runs the Python `script` as a client (arguments: the port, the CA file,
/// then `args`) against one connection served by `serve` with a fresh
/// acceptor; returns what Python printed and what `serve` returned.
async fn python_client_against<T, F, Fut>(
    name: &str,
    script: &'static str,
    args: &[&str],
    serve: F,
) -> (std::process::Output, T)
where
    T: Send + 'static,
    F: FnOnce(SecureAcceptor, tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("secure-link-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, KEY).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        serve(acceptor, tcp).await
    });
    let mut all: Vec<String> = vec![
        "-c".into(),
        script.into(),
        port,
        ca.to_str().unwrap().into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let client = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(&all)
            .output()
            .expect("python3 is needed for this test")
    });
    let out = client.await.unwrap();
    let served = server.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (out, served)
}

#[tokio::test]
async fn python_openssl_client_interoperates_and_sees_a_clean_shutdown() {
    let key = hex::encode(KEY);
    let (out, received) =
        python_client_against("interop", CLIENT, &[&key], |acceptor, tcp| async move {
            let mut server = acceptor.accept(tcp).await.unwrap();
            let mut received = Vec::new();
            while let Some(message) = server.next().await {
                let message = message.unwrap();
                if received.is_empty() {
                    server.send(message.clone()).await.unwrap();
                }
                received.push(message);
            }
            server.close().await.unwrap();
            received
        })
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("echo hello from OpenSSL"), "{stdout}");
    assert!(stdout.contains("clean shutdown TLSv1.3"), "{stdout}");
    assert_eq!(received, ["hello from OpenSSL", "", "ünïcode"]);
}

const TLS12_CLIENT: &str = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
try:
    ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    print("handshake succeeded")
except ssl.SSLError as err:
    print("refused:", err.reason)
"#;

/// The server speaks TLS 1.3 only: a client capped at TLS 1.2 (OpenSSL,
/// through Python) fails the handshake, at both ends.
#[tokio::test]
async fn a_tls12_client_is_refused() {
    let (out, verdict) =
        python_client_against("tls12", TLS12_CLIENT, &[], |acceptor, tcp| async move {
            acceptor.accept(tcp).await.map(|_| ())
        })
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("refused:"), "{stdout}");
    assert!(
        matches!(
            verdict,
            Err(secure_link::LinkError::Tls(
                secure_link::rustls::Error::PeerIncompatible(_)
            ))
        ),
        "{verdict:?}"
    );
}
