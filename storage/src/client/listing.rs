//! Asking a server for a listing, without a session ([`crate::listing`]
//! has the format and why): in a datagram where the pool may
//! (`client::datagram`), else, or when no answer comes within the
//! datagram's grace, over one TCP connection (one query, one answer
//! authenticated with the pair key of the client and the server's node
//! id, under the session's handshake deadline), taking whichever answer
//! comes first. A server that closes the connection unanswered
//! ([`refused`]) is asked over a session instead, so a client works with
//! servers of the release before listings (or of listing format version
//! 1).

use grapevine_crypto::error::SessionError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::conn::{ClientIdentity, ServerRef};
use crate::client::datagram::DatagramListings;
use crate::error::ClientError;
use crate::listing::{open_answer, Query, MAX_ANSWER_LEN};
use crate::types::StorageIndex;

/// How a listing's answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    /// In a datagram.
    Datagram,
    /// Over a TCP connection of its own.
    Tcp,
}

/// Which shares of `si` `server` says it holds, in an answer it
/// authenticated for this query, and how the answer came: in a datagram
/// if `datagrams` is given and the answer comes within its grace, else
/// over TCP (a datagram answer still taken if it comes first).
///
/// # Errors
/// As [`ask_tcp`].
pub(crate) async fn ask(
    me: &ClientIdentity,
    datagrams: Option<&DatagramListings>,
    server: ServerRef,
    si: StorageIndex,
) -> Result<(Vec<(u16, u64)>, Answered), ClientError> {
    let tcp = || async { Ok((ask_tcp(me, server, si).await?, Answered::Tcp)) };
    let Some(datagrams) = datagrams else {
        return tcp().await;
    };
    let Some(mut waiter) = datagrams.send(me, server, si).await else {
        return tcp().await;
    };
    // The pair key, derived (the first time only) while the server makes
    // its answer; a server id that is no key gets nothing in either way.
    if let Err(e) = me.identity.pair_key(&server.id) {
        return Err(ClientError::Protocol(server.id.short(), e.to_string()));
    }
    let mut can_come = true;
    match tokio::time::timeout(datagrams.grace(), waiter.answer(me)).await {
        Ok(Some(v)) => {
            datagrams.note_answered(waiter.elapsed());
            return Ok((v, Answered::Datagram));
        }
        Ok(None) => can_come = false,
        Err(_) => {
            tracing::debug!(server = %server.id.short(), "no listing datagram in time; asking over TCP too")
        }
    }
    tokio::select! {
        Some(v) = waiter.answer(me), if can_come => {
            datagrams.note_answered(waiter.elapsed());
            Ok((v, Answered::Datagram))
        }
        r = tcp() => {
            if r.is_ok() {
                datagrams.mark_quiet(server.id);
            }
            r
        }
    }
}

/// Which shares of `si` `server` says it holds, asked over a TCP
/// connection of its own.
///
/// # Errors
/// [`ClientError::Session`] if the server cannot be reached or closes
/// early, [`ClientError::Timeout`] past the handshake deadline,
/// [`ClientError::Protocol`] for a malformed answer or one the server did
/// not make for this query.
pub(crate) async fn ask_tcp(
    me: &ClientIdentity,
    server: ServerRef,
    si: StorageIndex,
) -> Result<Vec<(u16, u64)>, ClientError> {
    let name = server.id.short();
    let q = Query::new(si, me.identity.node_id());
    let io = |e: std::io::Error| ClientError::Session(name.clone(), SessionError::Io(e));
    let run = async {
        let mut s = TcpStream::connect(server.addr).await.map_err(io)?;
        let _ = s.set_nodelay(true);
        s.write_all(&q.to_wire()).await.map_err(io)?;
        // The pair key, derived (the first time only) while the server
        // makes its answer; a server id that is no key fails below.
        let _ = me.identity.pair_key(&server.id);
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(io)?;
        let len = usize::from(u16::from_be_bytes(len));
        if len > MAX_ANSWER_LEN {
            return Err(ClientError::Protocol(
                name.clone(),
                format!("listing answer of {len} bytes"),
            ));
        }
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.map_err(io)?;
        open_answer(&me.identity, &server.id, &q, &payload).map_err(|e| {
            tracing::warn!(server = %name, "listing refused: {e}");
            ClientError::Protocol(name.clone(), e.to_string())
        })
    };
    tokio::time::timeout(me.session.handshake_timeout, run)
        .await
        .map_err(|_| ClientError::Timeout(name.clone()))?
}

/// Whether `e`, from [`ask`], says the server took the connection and
/// closed it without an answer: a server that answers no listings (one of
/// a release before them, which reads the query's zero length as a broken
/// handshake and closes), as opposed to one that cannot be reached, is too
/// slow, or answers out of protocol.
pub(crate) fn refused(e: &ClientError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    matches!(e, ClientError::Session(_, SessionError::Io(io))
        if matches!(io.kind(), UnexpectedEof | ConnectionReset | BrokenPipe))
}
