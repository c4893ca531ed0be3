//! How an accepted connection opens: a Noise handshake for a session, or a
//! listing answered at once and closed ([`crate::listing`] has the
//! format and why). Both are bounded alike: the accept loop's handshake
//! slot is held throughout, and the whole opening, listing included, must
//! finish within the session's handshake deadline.

use std::io;

use grapevine_crypto::error::SessionError;
use grapevine_crypto::identity::Identity;
use grapevine_crypto::noise::SessionConfig;
use grapevine_crypto::record::SignedRecord;
use grapevine_crypto::session::Session;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::listing::{self, Query, QUERY_LEN};
use crate::server::handler::list_shares;
use crate::store::ShareStore;

/// What an accepted connection turned out to be.
pub(crate) enum Opening<S> {
    /// A session, and the peer's verified record.
    Session(Session<S>, SignedRecord),
    /// A listing, answered; the connection is closed.
    Listed,
}

/// Why an opening failed (logged, never sent).
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpeningError {
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] SessionError),
    /// The listing query failed or was refused.
    #[error("listing not answered: {0}")]
    Listing(String),
    /// The peer took too long.
    #[error("opening timed out")]
    Timeout,
}

/// Read how `stream` opens and run the handshake, or answer the listing it
/// asks for as `identity`, from `store`.
pub(crate) async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    identity: &Identity,
    record: &SignedRecord,
    store: &ShareStore,
    cfg: &SessionConfig,
) -> Result<Opening<S>, OpeningError> {
    let run = async {
        let mut len = [0u8; 2];
        stream
            .read_exact(&mut len)
            .await
            .map_err(|e| OpeningError::Handshake(e.into()))?;
        if len != listing::QUERY_MARK {
            let (s, peer) =
                Session::accept_with_len(stream, u16::from_be_bytes(len), identity, record, cfg)
                    .await?;
            return Ok(Opening::Session(s, peer));
        }
        if cfg.grid.is_some() {
            // A closed grid's server answers only peers it has admitted,
            // and a listing does not say who asks.
            return Err(OpeningError::Listing("this is a closed grid".into()));
        }
        answer(&mut stream, identity, store)
            .await
            .map_err(|e| OpeningError::Listing(e.to_string()))?;
        Ok(Opening::Listed)
    };
    tokio::time::timeout(cfg.handshake_timeout, run)
        .await
        .map_err(|_| OpeningError::Timeout)?
}

/// Read a listing query from `stream` and send the signed answer.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    identity: &Identity,
    store: &ShareStore,
) -> io::Result<()> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    if usize::from(u16::from_be_bytes(len)) != QUERY_LEN {
        return Err(io::Error::other("listing query of the wrong length"));
    }
    let mut payload = [0u8; QUERY_LEN];
    stream.read_exact(&mut payload).await?;
    let q = Query::from_payload(&payload).map_err(io::Error::other)?;
    // A client id that is no key gets no answer: refused before any
    // directory is read (the key, once derived, is remembered for the
    // answer below).
    identity.pair_key(&q.client).map_err(io::Error::other)?;
    // Listing reads a directory: the blocking pool's work, as over a
    // session.
    let store = store.clone();
    let shares = tokio::task::spawn_blocking(move || list_shares(&store, &q.si))
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
    let out = listing::answer(identity, &q, &shares).map_err(io::Error::other)?;
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::{open_answer, QUERY_MARK};
    use crate::types::StorageIndex;
    use grapevine_crypto::admission::GridId;
    use grapevine_crypto::record::LocationRecord;
    use std::time::Duration;

    struct Server {
        id: Identity,
        record: SignedRecord,
        store: ShareStore,
        _dir: tempfile::TempDir,
    }

    fn server() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = ShareStore::open(dir.path(), 0).unwrap();
        let mut w = store.allocate(&StorageIndex([3; 16]), 4, 5).unwrap();
        w.write_at(0, b"share").unwrap();
        w.close().unwrap();
        let id = Identity::generate();
        let record = LocationRecord::new(&id, vec!["127.0.0.1:1".parse().unwrap()])
            .sign(&id)
            .unwrap();
        Server {
            id,
            record,
            store,
            _dir: dir,
        }
    }

    /// Open a connection to `s` that sends `input` (and then nothing, the
    /// connection left open): how the opening ended, and every byte the
    /// server sent.
    async fn exchange(
        s: &Server,
        cfg: &SessionConfig,
        input: &[u8],
    ) -> (Result<(), OpeningError>, Vec<u8>) {
        let (mut client, srv) = tokio::io::duplex(64 * 1024);
        client.write_all(input).await.unwrap();
        let opened = open(srv, &s.id, &s.record, &s.store, cfg).await;
        let mut sent = Vec::new();
        client.read_to_end(&mut sent).await.unwrap();
        let r = opened.map(|o| assert!(matches!(o, Opening::Listed), "a listing"));
        (r, sent)
    }

    #[tokio::test]
    async fn a_listing_is_answered_authenticated_and_closed() {
        let s = server();
        let client = Identity::generate();
        let q = Query::new(StorageIndex([3; 16]), client.node_id());
        let (r, sent) = exchange(&s, &SessionConfig::default(), &q.to_wire()).await;
        r.unwrap();
        assert_eq!(
            usize::from(u16::from_be_bytes([sent[0], sent[1]])),
            sent.len() - 2
        );
        assert_eq!(
            open_answer(&client, &s.id.node_id(), &q, &sent[2..]),
            Ok(vec![(4, 5)])
        );
    }

    /// A closed grid's server answers no listing: it cannot tell who asks.
    #[tokio::test]
    async fn a_closed_grid_answers_no_listing() {
        let s = server();
        let cfg = SessionConfig {
            grid: Some(GridId::of(&Identity::generate())),
            ..SessionConfig::default()
        };
        let q = Query::new(StorageIndex([3; 16]), Identity::generate().node_id());
        let (r, sent) = exchange(&s, &cfg, &q.to_wire()).await;
        assert!(matches!(r, Err(OpeningError::Listing(_))), "{r:?}");
        assert!(sent.is_empty(), "nothing answered");
    }

    /// Malformed queries get no answer and end the connection; a peer that
    /// sends the mark and stops is cut off at the handshake deadline.
    #[tokio::test(start_paused = true)]
    async fn bad_or_slow_queries_end_the_connection_unanswered() {
        let s = server();
        let cfg = SessionConfig {
            handshake_timeout: Duration::from_secs(5),
            ..SessionConfig::default()
        };
        let good = Query::new(StorageIndex([3; 16]), Identity::generate().node_id()).to_wire();
        let mut weak = good.clone();
        weak[4 + QUERY_LEN - 32..].copy_from_slice(&[0; 32]);
        weak[4 + QUERY_LEN - 32] = 1;
        let mut long = good.clone();
        long[3] += 1;
        long.push(0);
        let mut version = good.clone();
        version[4] = 9;
        let cases = [
            ("too long", long),
            ("other version", version),
            ("a client id that is no key", weak),
        ];
        for (what, input) in cases {
            let (r, sent) = exchange(&s, &cfg, &input).await;
            assert!(matches!(r, Err(OpeningError::Listing(_))), "{what}: {r:?}");
            assert!(sent.is_empty(), "{what}");
        }
        for input in [&QUERY_MARK[..], &good[..good.len() - 1], &[0u8][..]] {
            let t0 = tokio::time::Instant::now();
            let (mut client, srv) = tokio::io::duplex(1024);
            client.write_all(input).await.unwrap();
            let r = open(srv, &s.id, &s.record, &s.store, &cfg).await;
            assert!(matches!(r, Err(OpeningError::Timeout)), "{input:?}");
            assert_eq!(t0.elapsed(), cfg.handshake_timeout);
        }
    }
}
