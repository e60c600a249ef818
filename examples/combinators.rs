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
    for reply in reader.await? {
        println!("2. reply {:?}", String::from_utf8_lossy(&reply?));
    }
    requests.close().await?;
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
    let merged = stream::select(server_a.map(|m| ("a", m)), server_b.map(|m| ("b", m)));
    let (ra, rb, received) = tokio::join!(
        talk(a, "client A"),
        talk(b, "client B"),
        merged.collect::<Vec<_>>()
    );
    ra?;
    rb?;
    for (link, message) in received {
        println!("3. link {link}: {:?}", String::from_utf8_lossy(&message?));
    }
    Ok(())
}

async fn accept_one(
    listener: &TcpListener,
    acceptor: &SecureAcceptor,
) -> Result<secure_link::SecureServer<TcpStream>, LinkError> {
    let (tcp, _) = listener.accept().await?;
    acceptor.accept(tcp).await
}
