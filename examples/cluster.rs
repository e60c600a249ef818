//! Three nodes of a distributed system on 127.0.0.1, linked each to each:
//! one CA, a client certificate per node (its identity: every link is
//! mutual TLS), the cluster's server certificate for 127.0.0.1 on every
//! listener, and the cluster's shared HMAC key. Every node broadcasts a few messages to both others;
//! each receiver names the sender by the identity in its client
//! certificate. Then every link closes cleanly.
//!
//! Run: `cargo run --example cluster`

use std::collections::BTreeMap;
use std::error::Error;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::certs::{self, ClientCert};
use secure_link::{HmacKey, SecureAcceptor, SecureClient, SecureConnector};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
const MESSAGES: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // One CA; every node's certificate is valid as a server certificate for
    // 127.0.0.1 and, signed by the same CA, as a client certificate.
    let pki = certs::generate_with_clients(&["127.0.0.1"], &NODES)?;
    let key = HmacKey::generate()?;

    // Each node listens; the server side of each link requires a client
    // certificate from the cluster's CA.
    let acceptor =
        SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, &key)?.with_client_ca(&pki.ca_pem)?;
    let mut addresses = Vec::new();
    let mut servers = JoinSet::new();
    for node in NODES {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        addresses.push(listener.local_addr()?);
        let acceptor = acceptor.clone();
        // Accepts one link from each of the other two nodes; returns what
        // it received, by sender identity.
        servers.spawn(async move {
            let mut links = JoinSet::new();
            for _ in 0..NODES.len() - 1 {
                let (tcp, _) = listener.accept().await?;
                let acceptor = acceptor.clone();
                links.spawn(async move {
                    let mut server = acceptor.accept(tcp).await?;
                    let from = server.peer_identity().unwrap_or_else(|| "?".to_owned());
                    let mut received = Vec::new();
                    while let Some(message) = server.next().await {
                        received.push(String::from_utf8_lossy(&message?).into_owned());
                    }
                    server.close().await?; // answer the client's close_notify
                    Ok::<_, secure_link::LinkError>((from, received))
                });
            }
            let mut by_sender = BTreeMap::new();
            while let Some(link) = links.join_next().await {
                let (from, received) = link??;
                by_sender.insert(from, received);
            }
            Ok::<_, Box<dyn Error + Send + Sync>>((node, by_sender))
        });
    }

    // Each node connects to both others with its own client certificate,
    // broadcasts, and closes (Ok only once the receiver confirmed).
    let mut senders = JoinSet::new();
    for (me, cert) in pki.clients.iter().enumerate() {
        let connector = node_connector(&pki.ca_pem, &key, cert)?;
        let peers: Vec<_> = addresses
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != me)
            .map(|(_, &addr)| addr)
            .collect();
        let name = cert.name.clone();
        senders.spawn(async move {
            let mut links: Vec<SecureClient<TcpStream>> = Vec::new();
            for addr in peers {
                let tcp = TcpStream::connect(addr).await?;
                links.push(connector.connect("127.0.0.1", tcp).await?);
            }
            for i in 0..MESSAGES {
                for link in &mut links {
                    link.feed(Bytes::from(format!("{name} says {i}"))).await?;
                }
            }
            for mut link in links {
                link.close().await?;
            }
            Ok::<_, secure_link::LinkError>(())
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent??;
    }

    // Who received what from whom; check it is everything, in order.
    let mut results = Vec::new();
    while let Some(result) = servers.join_next().await {
        results.push(result?.map_err(|err| err.to_string())?);
    }
    results.sort();
    for (node, by_sender) in &results {
        for (from, received) in by_sender {
            println!("{node} received from {from}: {}", received.join(", "));
            let expected: Vec<String> = (0..MESSAGES).map(|i| format!("{from} says {i}")).collect();
            if *received != expected || from == node {
                return Err(format!("{node}: unexpected messages from {from}").into());
            }
        }
        if by_sender.len() != NODES.len() - 1 {
            return Err(format!("{node} heard from {} nodes", by_sender.len()).into());
        }
    }
    println!(
        "all {} links closed cleanly",
        NODES.len() * (NODES.len() - 1)
    );
    Ok(())
}

/// A node's connector: trusts the cluster's CA, presents the node's
/// certificate, signs with the cluster's key.
fn node_connector(
    ca_pem: &str,
    key: &HmacKey,
    cert: &ClientCert,
) -> Result<SecureConnector, secure_link::LinkError> {
    SecureConnector::new(ca_pem, key)?.with_client_cert(&cert.chain_pem, &cert.key_pem)
}
