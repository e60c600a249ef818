//! The links are ordinary `futures` sinks and streams, so the combinators
//! apply. Three patterns, all in one process over 127.0.0.1 TCP:
//!
//! 1. `send_all` from a stream of messages;
//! 2. `split` for request/response, the two halves in two tasks;
//! 3. `select` over two links: one stream of messages from two clients.
//!
//! Run it with `cargo run --example combinators`.

use std::error::Error;

use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt, stream};
use secure_link::{HmacKey, LinkError, SecureAcceptor, SecureClient, SecureConnector, certs};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let pki = certs::generate(&["localhost"])?;
    let key = HmacKey::generate()?;
    let acceptor = SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, &key)?;
    let connector = SecureConnector::new(&pki.ca_pem, &key)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let connect = || async {
        let tcp = TcpStream::connect(addr).await.map_err(LinkError::from)?;
        connector.connect("localhost", tcp).await
    };

    // 1. send_all: a stream of 10,000 messages into the client sink.
    let accepted = accept_one(&listener, &acceptor);
    let (mut client, mut server) = tokio::try_join!(connect(), accepted)?;
    let mut numbers = stream::iter(0..10_000).map(|i| Ok(Bytes::from(format!("number {i}"))));
    let sending = async {
        client.send_all(&mut numbers).await?;
        client.close().await
    };
    let counting = async {
        let count = server
            .by_ref()
            .try_fold(0usize, |n, _| async move { Ok(n + 1) })
            .await?;
        server.close().await?;
        Ok::<_, LinkError>(count)
    };
    let ((), count) = tokio::try_join!(sending, counting)?;
    println!("1. send_all delivered {count} messages");
    check(count == 10_000, "send_all delivered every message")?;

    // 2. split: requests in one task, replies in another.
    let accepted = accept_one(&listener, &acceptor);
    let (client, server) = tokio::try_join!(connect(), accepted)?;
    let echo = tokio::spawn(async move {
        let (mut replies, requests) = server.split();
        let uppercased =
            requests.map(|request| request.map(|r| Bytes::from(r.to_ascii_uppercase())));
        replies.send_all(&mut uppercased.fuse()).await?; // until the requests end
        replies.close().await // answer the client's close_notify
    });
    let (mut requests, replies) = client.split();
    let reader = tokio::spawn(replies.take(3).collect::<Vec<_>>());
    for word in ["alpha", "beta", "gamma"] {
        requests.send(Bytes::from(word)).await?;
    }
    let mut replies = Vec::new();
    for reply in reader.await? {
        let reply = reply?;
        println!("2. reply {:?}", String::from_utf8_lossy(&reply));
        replies.push(reply);
    }
    check(
        replies == ["ALPHA", "BETA", "GAMMA"],
        "each request got its reply, in order",
    )?;
    requests.close().await?; // Ok: the server confirmed the end
    echo.await??;

    // 3. select: two links, one stream.
    let (a, server_a) = tokio::try_join!(connect(), accept_one(&listener, &acceptor))?;
    let (b, server_b) = tokio::try_join!(connect(), accept_one(&listener, &acceptor))?;
    let talk = |mut client: SecureClient<TcpStream>, name: &'static str| async move {
        for i in 0..3 {
            client.send(Bytes::from(format!("{name} says {i}"))).await?;
        }
        client.close().await
    };
    // Each server's stream ends at its client's close_notify; `close()`
    // then answers it, which is what lets the clients' `close()` succeed.
    let ended = |server: secure_link::SecureServer<TcpStream>, link: &'static str| {
        stream::unfold(Some(server), move |server| async move {
            let mut server = server?;
            match server.next().await {
                Some(message) => Some(((link, message), Some(server))),
                None => {
                    let _ = server.close().await;
                    None
                }
            }
        })
    };
    let merged = stream::select(ended(server_a, "a"), ended(server_b, "b"));
    let (ra, rb, received) = tokio::join!(
        talk(a, "client A"),
        talk(b, "client B"),
        merged.collect::<Vec<_>>()
    );
    ra?;
    rb?;
    let mut per_link = [0; 2];
    for (link, message) in received {
        println!("3. link {link}: {:?}", String::from_utf8_lossy(&message?));
        per_link[usize::from(link == "b")] += 1;
    }
    check(
        per_link == [3, 3],
        "both links delivered their three messages",
    )?;
    Ok(())
}

/// Fails the example (non-zero exit) when what it shows did not happen.
fn check(held: bool, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    if held {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

async fn accept_one(
    listener: &TcpListener,
    acceptor: &SecureAcceptor,
) -> Result<secure_link::SecureServer<TcpStream>, LinkError> {
    let (tcp, _) = listener.accept().await?;
    acceptor.accept(tcp).await
}
