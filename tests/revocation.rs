//! A reload that removes a key or a client CA, seen from a live link:
//! [`SecureServer::revoked_by`] against the new configuration, and
//! [`ReloadableAcceptor::changes`] telling a link's task of the reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures::{FutureExt, SinkExt, StreamExt};
use secure_link::{ReloadableAcceptor, Revoked, SecureAcceptor, SecureConnector, certs};

const OLD: &[u8] = b"the key being retired";
const NEW: &[u8] = b"the key replacing it";

fn acceptor(bundle: &certs::CertBundle, keys: &[&[u8]]) -> SecureAcceptor {
    let (primary, more) = keys.split_first().unwrap();
    more.iter().fold(
        SecureAcceptor::new(&bundle.chain_pem, &bundle.key_pem, *primary).unwrap(),
        |acceptor, key| acceptor.with_additional_key(*key),
    )
}

/// A link pinned to a key is revoked by a configuration without that key,
/// whatever else it holds, and by no configuration that still has it (in
/// any position). Before its first message it is pinned to nothing.
#[tokio::test]
async fn a_link_is_revoked_by_a_configuration_without_its_key() {
    let bundle = common::pki();
    let serving = acceptor(&bundle, &[NEW, OLD]);
    let connector = SecureConnector::new(&bundle.ca_pem, OLD).unwrap();
    let (mut client, mut server) = common::connected(&connector, &serving).await;

    let new_only = acceptor(&bundle, &[NEW]);
    // Nothing verified yet: no key to revoke.
    assert_eq!(server.revoked_by(&new_only), None);

    client.send("pinned".into()).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), "pinned");
    assert_eq!(server.revoked_by(&new_only), Some(Revoked::Key));
    assert_eq!(server.revoked_by(&acceptor(&bundle, &[OLD])), None);
    assert_eq!(server.revoked_by(&acceptor(&bundle, &[NEW, OLD])), None);
    assert_eq!(server.revoked_by(&acceptor(&bundle, &[OLD, NEW])), None);
    // Same fingerprint length, same prefix: only the whole key counts.
    assert_eq!(
        server.revoked_by(&acceptor(&bundle, &[b"the key being retire!"])),
        Some(Revoked::Key)
    );
    assert_eq!(Revoked::Key.label(), "key_revoked");

    // A server certificate change alone revokes nothing.
    let other_pki = common::pki();
    assert_eq!(server.revoked_by(&acceptor(&other_pki, &[OLD])), None);
}

/// Under mutual TLS, a configuration whose client CAs do not verify the
/// link's client certificate revokes it; the same CA, or no client CA
/// required, does not.
#[tokio::test]
async fn a_link_is_revoked_by_client_cas_that_no_longer_verify_its_certificate() {
    let bundle = certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let stranger = certs::generate_with_clients(&["localhost"], &["node-1"]).unwrap();
    let with_ca = |ca: &str| acceptor(&bundle, &[OLD]).with_client_ca(ca).unwrap();
    let connector = SecureConnector::new(&bundle.ca_pem, OLD)
        .unwrap()
        .with_client_cert(&bundle.clients[0].chain_pem, &bundle.clients[0].key_pem)
        .unwrap();
    let (mut client, mut server) = common::connected(&connector, &with_ca(&bundle.ca_pem)).await;
    client.send("certified".into()).await.unwrap();
    assert_eq!(server.next().await.unwrap().unwrap(), "certified");

    assert_eq!(server.revoked_by(&with_ca(&bundle.ca_pem)), None);
    assert_eq!(
        server.revoked_by(&with_ca(&stranger.ca_pem)),
        Some(Revoked::ClientCa)
    );
    // Both CAs in the file: still verified.
    let both = format!("{}{}", stranger.ca_pem, bundle.ca_pem);
    assert_eq!(server.revoked_by(&with_ca(&both)), None);
    assert_eq!(server.revoked_by(&acceptor(&bundle, &[OLD])), None);
    assert_eq!(Revoked::ClientCa.label(), "client_ca_revoked");

    // A link without a client certificate fails a configuration that
    // requires one.
    let plain = acceptor(&bundle, &[OLD]);
    let connector = SecureConnector::new(&bundle.ca_pem, OLD).unwrap();
    let (_client, server) = common::connected(&connector, &plain).await;
    assert_eq!(
        server.revoked_by(&with_ca(&bundle.ca_pem)),
        Some(Revoked::ClientCa)
    );
}

/// `changes()` tells of each replace once, with the acceptor put in place;
/// a replace before the first wait is not missed; several are seen as the
/// latest.
#[tokio::test]
async fn changes_tell_of_every_replace_with_the_acceptor_in_place() {
    let bundle = common::pki();
    let reloadable = ReloadableAcceptor::new(acceptor(&bundle, &[OLD]));
    let mut changes = reloadable.changes();
    assert!(changes.changed().now_or_never().is_none(), "no replace yet");

    reloadable.replace(acceptor(&bundle, &[NEW]));
    let fresh = changes
        .changed()
        .now_or_never()
        .expect("the replace is seen");
    assert!(format!("{fresh:?}").contains(&secure_link::HmacKey::from(NEW).fingerprint()));
    assert!(changes.changed().now_or_never().is_none(), "seen once");

    reloadable.replace(acceptor(&bundle, &[OLD]));
    reloadable.replace(acceptor(&bundle, &[NEW, OLD]));
    let latest = changes
        .changed()
        .now_or_never()
        .expect("the replaces are seen");
    let keys = format!("{latest:?}");
    assert!(
        keys.contains(&secure_link::HmacKey::from(NEW).fingerprint()),
        "{keys}"
    );
    assert!(
        keys.contains(&secure_link::HmacKey::from(OLD).fingerprint()),
        "{keys}"
    );
    assert!(changes.changed().now_or_never().is_none());
    assert_eq!(format!("{:?}", changes.current()), keys);

    // With every ReloadableAcceptor gone no replace can come: it waits.
    drop(reloadable);
    assert!(changes.changed().now_or_never().is_none());
}
