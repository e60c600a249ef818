//! An async client over TCP: sends its arguments as messages, prints the
//! replies of the echo server (`examples/server.rs`), closes cleanly. Shows
//! the connector, a timeout on each phase, and batching with `feed` +
//! `flush`.
//!
//! ```text
//! cargo run --example client -- 127.0.0.1:7878 pki/ca.pem key.hex hello world
//! ```

use std::error::Error;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::{HmacKey, SecureConnector};
use tokio::net::TcpStream;
use tokio::time::timeout;

const PHASE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, ca_file, key_file, messages @ ..] = args.as_slice() else {
        return Err("usage: client ADDR CA_FILE KEY_FILE MESSAGE...".into());
    };
    let ca = std::fs::read_to_string(ca_file)?;
    let key = HmacKey::from_hex(&std::fs::read_to_string(key_file)?)?;
    let connector = SecureConnector::new(&ca, key)?;

    let tcp = timeout(PHASE_TIMEOUT, TcpStream::connect(addr.as_str())).await??;
    let mut client = timeout(PHASE_TIMEOUT, connector.connect("localhost", tcp)).await??;
    let (_, tls) = client.get_ref();
    println!(
        "connected: {:?}, {:?}",
        tls.protocol_version(),
        tls.negotiated_cipher_suite().map(|s| s.suite())
    );

    // Queue every message, then one flush: they share TLS records.
    for message in messages {
        client.feed(Bytes::from(message.clone())).await?;
    }
    timeout(PHASE_TIMEOUT, client.flush()).await??;

    for _ in messages {
        match timeout(PHASE_TIMEOUT, client.next()).await? {
            Some(reply) => println!("reply: {:?}", String::from_utf8_lossy(&reply?)),
            None => return Err("the server closed before replying to everything".into()),
        }
    }
    // close_notify, then wait for the server's.
    timeout(PHASE_TIMEOUT, client.close()).await??;
    println!("closed cleanly");
    Ok(())
}
