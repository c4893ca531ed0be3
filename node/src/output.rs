//! Where a download's bytes go, decided before anything is downloaded.
//!
//! `get -o PATH` must never destroy what is at PATH on a failure, nor turn
//! a device or a symlink into a regular file. The rules ([`Target::for_path`]):
//!
//! * a regular file or a path that does not exist yet is written through a
//!   temporary file beside the (symlink-resolved) target, renamed into
//!   place only once the download has verified; on failure the old file
//!   stays as it was and no partial file is left;
//! * a symlink is followed (the link stays a link; its target is what is
//!   replaced);
//! * a device, FIFO or socket is written into directly (so `-o /dev/null`
//!   works); bytes written cannot be taken back, so a failure says how many
//!   were written;
//! * a directory is refused, with its path.
//!
//! Standard output ([`Target::Stdout`]) is like a device: bytes already
//! written to a pipe cannot be taken back, so a failure says the output is
//! incomplete and how many bytes it holds.
//!
//! [`Sink`] is the writer a download writes into; it counts what it wrote,
//! for those messages. Streams are written through [`BlockingFile`], whose
//! every write is one `write(2)` on the blocking pool, so the count is
//! exact even when a pipe's reader goes away mid-write (tokio's own file
//! and stdout take a whole buffer at once and lose a partial write's
//! count).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use std::future::Future;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::OpError;

/// Symlinks followed at most (as the kernel's limit).
const MAX_LINKS: usize = 40;

/// Where a download goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A regular file or a new path: through a temporary file in the same
    /// directory, renamed over `dest` (the symlink-resolved path) once
    /// verified.
    Replace {
        /// The path as given.
        given: PathBuf,
        /// The file to create or replace.
        dest: PathBuf,
    },
    /// A device, FIFO or socket, written into directly.
    Direct {
        /// The path as given.
        given: PathBuf,
    },
}

impl Target {
    /// The target for `-o PATH` (`-` is standard output).
    ///
    /// # Errors
    /// [`OpError::IsDirectory`] for a directory; [`OpError::File`] if the
    /// path cannot be examined, its directory does not exist, or symlinks
    /// loop.
    pub fn for_path(given: &Path) -> Result<Target, OpError> {
        if given == Path::new("-") {
            return Ok(Target::Stdout);
        }
        let file_err = |path: &Path, source| OpError::File {
            path: path.to_path_buf(),
            source,
        };
        let mut p = given.to_path_buf();
        for _ in 0..MAX_LINKS {
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let dir = parent(&p);
                    if !dir.is_dir() {
                        return Err(file_err(
                            given,
                            std::io::Error::new(
                                std::io::ErrorKind::NotFound,
                                format!("directory {} does not exist", dir.display()),
                            ),
                        ));
                    }
                    return Ok(Target::Replace {
                        given: given.to_path_buf(),
                        dest: p,
                    });
                }
                Err(e) => return Err(file_err(&p, e)),
            };
            let t = meta.file_type();
            if t.is_symlink() {
                let link = std::fs::read_link(&p).map_err(|e| file_err(&p, e))?;
                p = if link.is_absolute() {
                    link
                } else {
                    parent(&p).join(link)
                };
                continue;
            }
            if t.is_dir() {
                return Err(OpError::IsDirectory(given.to_path_buf()));
            }
            if t.is_file() {
                return Ok(Target::Replace {
                    given: given.to_path_buf(),
                    dest: p,
                });
            }
            return Ok(Target::Direct {
                given: given.to_path_buf(),
            });
        }
        Err(file_err(
            given,
            std::io::Error::other(format!("more than {MAX_LINKS} symbolic links")),
        ))
    }

    /// How messages name the target.
    pub fn name(&self) -> String {
        match self {
            Target::Stdout => "standard output".into(),
            Target::Replace { given, .. } | Target::Direct { given } => given.display().to_string(),
        }
    }

    /// Whether a failure can leave bytes already written there.
    pub fn is_stream(&self) -> bool {
        !matches!(self, Target::Replace { .. })
    }
}

/// The directory `p` is in (`.` for a bare name).
fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A writer that counts the bytes it has written and keeps the first
/// error its target gave (so a failure can be told apart from the
/// download's own).
#[derive(Debug)]
pub struct Sink<W> {
    inner: W,
    /// Bytes the target has written (flushed).
    written: u64,
    /// Bytes the target took and has not flushed yet.
    pending: u64,
    failed: Option<(std::io::ErrorKind, String)>,
}

impl<W: AsyncWrite + Unpin> Sink<W> {
    /// Count what goes into `inner`.
    pub fn new(inner: W) -> Self {
        Sink {
            inner,
            written: 0,
            pending: 0,
            failed: None,
        }
    }

    /// The target's first write error, if it gave one.
    pub fn write_error(&self) -> Option<std::io::Error> {
        self.failed
            .as_ref()
            .map(|(kind, msg)| std::io::Error::new(*kind, msg.clone()))
    }

    /// Bytes the target has written so far (taken and flushed).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flush and give back the writer.
    ///
    /// # Errors
    /// The flush's.
    pub async fn finish(mut self) -> std::io::Result<W> {
        self.inner.flush().await?;
        Ok(self.inner)
    }
}

impl<W: AsyncWrite + Unpin> Sink<W> {
    fn note(&mut self, e: &std::io::Error) {
        if self.failed.is_none() {
            self.failed = Some((e.kind(), e.to_string()));
        }
    }

    /// Flush what the target took but has not written yet (tokio's file
    /// and stdout write on a blocking thread: their errors and the true
    /// count show only at a flush).
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.pending == 0 {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.written = self.written.saturating_add(self.pending);
                self.pending = 0;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.note(&e);
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Sink<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_settle(cx))?;
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.pending = n as u64;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => {
                self.note(&e);
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_settle(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_settle(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One write in progress on the blocking pool: the file, what the write
/// did, and how far the file is now clean (written back, out of the cache).
type WriteOp = tokio::task::JoinHandle<(std::fs::File, std::io::Result<usize>, u64)>;

/// A file (or standard output) written with one `write(2)` per
/// `poll_write`, on the blocking pool: partial writes report their true
/// count. With [`BlockingFile::bounded`], each write copies at most a set
/// size, and what was written is synced and dropped from the page cache at
/// intervals, so a large download never piles up dirty pages (which a
/// memory cgroup is charged for and cannot reclaim until they are written).
#[derive(Debug)]
pub struct BlockingFile {
    file: Option<std::fs::File>,
    op: Option<WriteOp>,
    max_write: usize,
    writeback: Option<u64>,
    written: u64,
    clean: u64,
}

/// Largest write handed to the blocking pool at once.
const MAX_WRITE: usize = 1 << 20;

impl BlockingFile {
    /// Write into `file`.
    pub fn new(file: std::fs::File) -> Self {
        BlockingFile {
            file: Some(file),
            op: None,
            max_write: MAX_WRITE,
            writeback: None,
            written: 0,
            clean: 0,
        }
    }

    /// Copy at most `max_write` bytes per write, and (for a regular file)
    /// write back and drop from the page cache what was written every
    /// `writeback` bytes.
    pub fn bounded(mut self, max_write: usize, writeback: Option<u64>) -> Self {
        self.max_write = max_write.clamp(1, MAX_WRITE);
        self.writeback = writeback.map(|w| w.max(1));
        self
    }

    /// Bytes of the file already written back and dropped from the cache.
    pub fn clean(&self) -> u64 {
        self.clean
    }

    /// The file, once no write is in progress.
    pub fn into_file(self) -> Option<std::fs::File> {
        self.file
    }

    /// Write into this process's standard output.
    ///
    /// # Errors
    /// Standard output cannot be duplicated.
    pub fn stdout() -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
        Ok(BlockingFile::new(std::fs::File::from(fd)))
    }
}

/// Write `data` to `file`, then, if `writeback` bytes or more are not yet
/// clean, sync them and drop them from the page cache: (what the write
/// did, how far the file is clean now).
fn write_and_clean(
    file: &mut std::fs::File,
    data: &[u8],
    at: u64,
    clean: u64,
    writeback: Option<u64>,
) -> (std::io::Result<usize>, u64) {
    let r = file.write(data);
    let Ok(n) = r else { return (r, clean) };
    let end = at + n as u64;
    match writeback {
        Some(every) if end - clean >= every => {
            if let Err(e) = file.sync_data() {
                return (Err(e), clean);
            }
            // Advice only: a kernel that ignores it costs memory, not data.
            let _ = rustix::fs::fadvise(
                &*file,
                clean,
                std::num::NonZeroU64::new(end - clean),
                rustix::fs::Advice::DontNeed,
            );
            (Ok(n), end)
        }
        _ => (Ok(n), clean),
    }
}

impl AsyncWrite for BlockingFile {
    /// The caller gives the same bytes again after `Pending` (as
    /// `write_all` does); the count returned is what the write took.
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.op.is_none() {
            let Some(mut file) = self.file.take() else {
                return Poll::Ready(Err(std::io::Error::other("an earlier write was lost")));
            };
            let data = buf[..buf.len().min(self.max_write)].to_vec();
            let (at, clean, writeback) = (self.written, self.clean, self.writeback);
            self.op = Some(tokio::task::spawn_blocking(move || {
                let (r, clean) = write_and_clean(&mut file, &data, at, clean, writeback);
                (file, r, clean)
            }));
        }
        let op = self.op.as_mut().expect("a write in progress");
        match Pin::new(op).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(done) => {
                self.op = None;
                match done {
                    Ok((file, r, clean)) => {
                        self.file = Some(file);
                        self.clean = clean;
                        if let Ok(n) = r {
                            self.written += n as u64;
                        }
                        Poll::Ready(r)
                    }
                    Err(e) => Poll::Ready(Err(std::io::Error::other(e))),
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_rules() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert_eq!(Target::for_path(Path::new("-")).unwrap(), Target::Stdout);
        // A new path and a regular file are replaced through a temporary.
        let new = d.join("new.bin");
        assert!(
            matches!(Target::for_path(&new).unwrap(), Target::Replace { dest, .. } if dest == new)
        );
        std::fs::write(d.join("old.bin"), b"x").unwrap();
        assert!(matches!(
            Target::for_path(&d.join("old.bin")).unwrap(),
            Target::Replace { .. }
        ));
        // A symlink (relative, chained, dangling) is followed.
        std::os::unix::fs::symlink("old.bin", d.join("l1")).unwrap();
        std::os::unix::fs::symlink(d.join("l1"), d.join("l2")).unwrap();
        match Target::for_path(&d.join("l2")).unwrap() {
            Target::Replace { dest, given } => {
                assert_eq!(dest, d.join("old.bin"));
                assert_eq!(given, d.join("l2"));
            }
            other => panic!("{other:?}"),
        }
        std::os::unix::fs::symlink("gone.bin", d.join("dangling")).unwrap();
        assert!(matches!(
            Target::for_path(&d.join("dangling")).unwrap(),
            Target::Replace { dest, .. } if dest == d.join("gone.bin")
        ));
        // Devices are written directly; directories refused with the path.
        assert!(matches!(
            Target::for_path(Path::new("/dev/null")).unwrap(),
            Target::Direct { .. }
        ));
        let e = Target::for_path(d).unwrap_err().to_string();
        assert!(
            e.contains(&d.display().to_string()) && e.contains("is a directory"),
            "{e}"
        );
        // A missing directory is named.
        let e = Target::for_path(&d.join("no/such/dir/f"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no/such/dir") && e.contains("does not exist"),
            "{e}"
        );
        // Links that loop end.
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        assert!(Target::for_path(&d.join("loop")).is_err());
    }

    /// A reader that leaves after 100 KB: the write fails, and the count
    /// is what the stream took (what was read, plus what its buffer held
    /// when the reader left), never a whole buffer more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_write_that_fails_midway_reports_the_true_count() {
        let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let drain = std::thread::spawn(move || {
            use std::io::Read;
            let mut got = vec![0u8; 100_000];
            let mut r = reader;
            r.read_exact(&mut got).unwrap();
        });
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(writer));
        let mut s = Sink::new(BlockingFile::new(file));
        let data = vec![1u8; 4 << 20];
        let r = async {
            s.write_all(&data).await?;
            s.flush().await
        }
        .await;
        drain.join().unwrap();
        assert!(r.is_err(), "the reader left");
        let w = s.written();
        assert!((100_000..(4 << 20) - (1 << 20)).contains(&w), "{w}");
        assert!(s.write_error().is_some());
    }

    #[tokio::test]
    async fn a_sink_counts_what_it_wrote_and_keeps_its_targets_error() {
        let mut s = Sink::new(Vec::new());
        s.write_all(b"hello").await.unwrap();
        s.write_all(b" world").await.unwrap();
        assert_eq!(s.written(), 5, "taken is not written until flushed");
        s.flush().await.unwrap();
        assert_eq!(s.written(), 11);
        assert!(s.write_error().is_none());
        assert_eq!(s.finish().await.unwrap(), b"hello world");
        let full = tokio::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .await
            .unwrap();
        let mut s = Sink::new(full);
        let r = async {
            s.write_all(b"x").await?;
            s.flush().await
        }
        .await;
        assert!(r.is_err());
        assert_eq!(s.written(), 0);
        assert_eq!(
            s.write_error().map(|e| e.kind()),
            Some(std::io::ErrorKind::StorageFull)
        );
    }

    /// Issue 25: a bounded file copies at most its write size per write
    /// and writes back (and drops from the page cache) what was written
    /// whenever the interval is passed, so a download's dirty pages stay
    /// below it; the file's bytes are the ones given.
    #[tokio::test]
    async fn a_bounded_file_writes_back_at_intervals() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("out");
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i * 11) as u8).collect();
        let mut f = BlockingFile::new(std::fs::File::create(&path).unwrap())
            .bounded(256 << 10, Some(1 << 20));
        let mut cleans = Vec::new();
        for c in data.chunks(1 << 20) {
            // One call: at most the write size is taken.
            let n = f.write(c).await.unwrap();
            assert_eq!(n, 256 << 10);
            f.write_all(&c[n..]).await.unwrap();
            cleans.push(f.clean());
        }
        assert_eq!(cleans, [1 << 20, 2 << 20, 3 << 20]);
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let mut plain = BlockingFile::new(std::fs::File::create(&path).unwrap());
        plain.write_all(&data).await.unwrap();
        assert_eq!(plain.clean(), 0, "unbounded: nothing written back");
    }
}
