//! Shares opened for checking and repair: footer, extension block and hash
//! list read and checked against a verify capability ([`Verifier`]), so
//! every block read afterwards can be checked on its own. Nothing here
//! needs the file's key.

use crate::cap::VerifyCap;
use crate::chk::{Footer, Verifier, FOOTER_LEN};
use crate::client::conn::Conn;
use crate::client::locate::Located;
use crate::client::pool::SessionPool;
use crate::error::{ClientError, CodecError};

/// A share whose hash list was accepted, and the session to its server.
#[derive(Debug)]
pub(crate) struct VerifiedSource {
    pub(crate) conn: Conn,
    pub(crate) shnum: u16,
}

/// Open `loc` for block reads: read its footer, the extension block (once,
/// into `v`) and its hash list, each checked. `read` counts the bytes read.
///
/// # Errors
/// [`CodecError::CorruptShare`] for a share inconsistent with the
/// capability (a lying server's too); session errors.
pub(crate) async fn open_verified(
    pool: &SessionPool,
    loc: &Located,
    cap: &VerifyCap,
    v: &mut Option<Verifier>,
    read: &mut u64,
) -> Result<VerifiedSource, ClientError> {
    // The budget's engine for regenerating (repair).
    let small = pool.config().memory.small_tables();
    let mut conn = pool.get(loc.server).await?;
    let mut r = read_meta(&mut conn, loc, cap, v, read, small).await;
    if conn.reused && matches!(r, Err(ClientError::Session(..))) {
        // An idle session the server had closed: once more on a fresh one.
        pool.put_back(conn);
        conn = pool.get_fresh(loc.server).await?;
        r = read_meta(&mut conn, loc, cap, v, read, small).await;
    }
    match r {
        Ok(()) => Ok(VerifiedSource {
            conn,
            shnum: loc.shnum,
        }),
        Err(e) => {
            pool.put_back(conn);
            Err(e)
        }
    }
}

async fn read_meta(
    conn: &mut Conn,
    loc: &Located,
    cap: &VerifyCap,
    v: &mut Option<Verifier>,
    read: &mut u64,
    small: bool,
) -> Result<(), ClientError> {
    let corrupt = || ClientError::Codec(CodecError::CorruptShare(loc.shnum));
    if loc.size < FOOTER_LEN || loc.shnum >= cap.n {
        return Err(corrupt());
    }
    let footer_bytes = conn
        .read(cap.si, loc.shnum, loc.size - FOOTER_LEN, FOOTER_LEN)
        .await?;
    *read = read.saturating_add(FOOTER_LEN);
    let footer = Footer::parse(&footer_bytes, loc.size).map_err(|_| corrupt())?;
    if v.is_none() {
        let ueb = conn
            .read(cap.si, loc.shnum, footer.ueb_offset, footer.ueb_len as u64)
            .await?;
        *read = read.saturating_add(ueb.len() as u64);
        *v = Some(
            Verifier::new(*cap, &ueb)
                .map_err(|e| match e {
                    CodecError::UnsupportedVersion { .. } => ClientError::Codec(e),
                    _ => corrupt(),
                })?
                .with_small_tables(small),
        );
    }
    let ver = v.as_mut().expect("verifier set");
    // The verified UEB fixes the layout: a footer (or a size) that
    // disagrees is a corrupt share, and nothing it points at is read.
    if loc.size != ver.share_size()
        || footer.hashes_offset != ver.ueb().blocks_len()
        || footer.ueb_offset - footer.hashes_offset != ver.ueb().hashes_len()
    {
        return Err(corrupt());
    }
    let hashes = conn
        .read(
            cap.si,
            loc.shnum,
            footer.hashes_offset,
            ver.ueb().hashes_len(),
        )
        .await?;
    *read = read.saturating_add(hashes.len() as u64);
    ver.add_hashes(loc.shnum, &hashes)?;
    Ok(())
}
