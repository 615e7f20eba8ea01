//! The sending side of fsutil's DiffCopy protocol (fsutil `send.go`).
//!
//! * The sender streams a `PACKET_STAT` for every entry in walk order, then
//!   a `PACKET_STAT` without a stat as terminator.
//! * The receiver asks for file contents with `PACKET_REQ{id}`, where `id`
//!   is the index of the entry's STAT in the stream; requests may come at
//!   any time, in any order, and only for regular files.
//! * The sender answers each with `PACKET_DATA{id}` chunks followed by an
//!   empty `PACKET_DATA{id}`; up to four files are read at once.
//! * The receiver sends `PACKET_FIN` when done; the sender answers with
//!   `PACKET_FIN` and ends the stream. `PACKET_ERR` from either side aborts.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::{Packet, Stat};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::Status;

use super::stat::can_request_data;
use super::walk::{WalkError, Walker};

/// Size of the `PACKET_DATA` chunks (fsutil's copy buffer).
pub const CHUNK_SIZE: usize = 32 * 1024;
/// Files read concurrently (fsutil's sender workers).
const WORKERS: usize = 4;
/// Packets buffered ahead of the gRPC stream (bounds memory to about
/// `OUTPUT_QUEUE * CHUNK_SIZE`).
const OUTPUT_QUEUE: usize = 32;

type Item = Result<Packet, Status>;

/// The files that may still be requested: STAT index → host path.
type Requestable = Arc<Mutex<HashMap<u32, PathBuf>>>;

fn packet(kind: PacketType) -> Packet {
    Packet {
        r#type: kind as i32,
        ..Packet::default()
    }
}

fn stat_packet(stat: Stat) -> Packet {
    Packet {
        stat: Some(stat),
        ..packet(PacketType::PacketStat)
    }
}

fn data_packet(id: u32, data: Vec<u8>) -> Packet {
    Packet {
        id,
        data,
        ..packet(PacketType::PacketData)
    }
}

/// Shared cancellation: set when the transfer ends for any reason, so that
/// the blocking walker and file readers stop.
#[derive(Debug, Clone, Default)]
struct Cancel(Arc<AtomicBool>);

impl Cancel {
    fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The packets the sender streams back to the receiver. Ends after
/// `PACKET_FIN` (success) or after the first error.
#[derive(Debug)]
pub struct DiffCopyStream {
    rx: mpsc::Receiver<Item>,
    cancel: Cancel,
    done: bool,
}

impl Stream for DiffCopyStream {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(self.rx.poll_recv(cx));
        let finished = match &item {
            Some(Ok(p)) => p.r#type == PacketType::PacketFin as i32,
            Some(Err(_)) | None => true,
        };
        if finished {
            self.done = true;
            self.cancel.cancel();
            self.rx.close();
        }
        Poll::Ready(item)
    }
}

impl Drop for DiffCopyStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts sending the tree of `walker` to the receiver whose packets
/// arrive on `inbound`; returns the packets to send back.
pub fn start<S>(walker: Walker, inbound: S) -> DiffCopyStream
where
    S: Stream<Item = Result<Packet, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
    let cancel = Cancel::default();
    let files: Requestable = Arc::default();

    {
        let (tx, cancel, files) = (tx.clone(), cancel.clone(), files.clone());
        tokio::task::spawn_blocking(move || send_stats(&walker, &tx, &cancel, &files));
    }

    // Unbounded on purpose: requests must always be read off the
    // connection at once (h2 closes a connection whose small, unread DATA
    // frames exceed its budget: "too_many_data_frames" after ~2,000 queued
    // requests), and each file can be requested only once, so the queue is
    // bounded by the number of files listed.
    let (job_tx, job_rx) = mpsc::unbounded_channel::<(u32, PathBuf)>();
    let job_rx = Arc::new(tokio::sync::Mutex::new(job_rx));
    for _ in 0..WORKERS {
        tokio::spawn(file_worker(job_rx.clone(), tx.clone(), cancel.clone()));
    }
    tokio::spawn(read_requests(inbound, job_tx, tx, cancel.clone(), files));

    DiffCopyStream {
        rx,
        cancel,
        done: false,
    }
}

/// Walks the tree and streams the STAT packets, then the terminator; on a
/// walk error, a `PACKET_ERR` and the error status.
fn send_stats(walker: &Walker, tx: &mpsc::Sender<Item>, cancel: &Cancel, files: &Requestable) {
    let mut next_id: u32 = 0;
    let res = walker.walk(|entry| {
        if cancel.is_cancelled() {
            return Err(WalkError::Cancelled);
        }
        let id = next_id;
        next_id = next_id.checked_add(1).ok_or_else(|| WalkError::Io {
            context: "too many files".to_owned(),
            source: io::Error::other("more than 2^32 entries"),
        })?;
        if can_request_data(entry.stat.mode) {
            files
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, entry.abs_path);
        }
        tx.blocking_send(Ok(stat_packet(entry.stat)))
            .map_err(|_| WalkError::Cancelled)
    });
    match res {
        Ok(()) => {
            let _ = tx.blocking_send(Ok(packet(PacketType::PacketStat)));
        }
        Err(WalkError::Cancelled) => {}
        Err(e) => {
            cancel.cancel();
            let msg = e.to_string();
            let _ = tx.blocking_send(Ok(Packet {
                data: msg.clone().into_bytes(),
                ..packet(PacketType::PacketErr)
            }));
            let _ = tx.blocking_send(Err(Status::unknown(msg)));
        }
    }
}

/// Reads the receiver's packets: queues file requests, and ends the
/// transfer on `PACKET_FIN`, `PACKET_ERR` or a broken stream.
async fn read_requests<S>(
    mut inbound: S,
    jobs: mpsc::UnboundedSender<(u32, PathBuf)>,
    tx: mpsc::Sender<Item>,
    cancel: Cancel,
    files: Requestable,
) where
    S: Stream<Item = Result<Packet, Status>> + Unpin,
{
    let failure = loop {
        let msg = tokio::select! {
            msg = inbound.next() => msg,
            // The response stream is gone: nobody to send to.
            () = tx.closed() => break None,
        };
        let p = match msg {
            Some(Ok(p)) => p,
            Some(Err(status)) => break Some(status),
            None => {
                break Some(Status::aborted(
                    "receiver closed the stream without PACKET_FIN",
                ))
            }
        };
        match PacketType::try_from(p.r#type) {
            Ok(PacketType::PacketReq) => {
                let path = files
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&p.id);
                let Some(path) = path else {
                    break Some(Status::invalid_argument(format!(
                        "invalid file id {}",
                        p.id
                    )));
                };
                if jobs.send((p.id, path)).is_err() {
                    break None;
                }
            }
            Ok(PacketType::PacketErr) => {
                break Some(Status::unknown(format!(
                    "error from receiver: {}",
                    String::from_utf8_lossy(&p.data)
                )));
            }
            Ok(PacketType::PacketFin) => {
                let _ = tx.send(Ok(packet(PacketType::PacketFin))).await;
                break None;
            }
            // fsutil's sender ignores anything else.
            _ => {}
        }
    };
    cancel.cancel();
    if let Some(status) = failure {
        let _ = tx.send(Err(status)).await;
    }
}

/// One of the workers answering file requests.
async fn file_worker(
    jobs: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(u32, PathBuf)>>>,
    tx: mpsc::Sender<Item>,
    cancel: Cancel,
) {
    loop {
        let job = jobs.lock().await.recv().await;
        let Some((id, path)) = job else {
            return;
        };
        let (tx2, cancel2) = (tx.clone(), cancel.clone());
        let res = tokio::task::spawn_blocking(move || send_file(id, &path, &tx2, &cancel2)).await;
        let err = match res {
            Ok(Ok(())) => continue,
            Ok(Err(SendFileError::Stopped)) => return,
            Ok(Err(SendFileError::Read(e))) => e,
            Err(join) => format!("file sender failed: {join}"),
        };
        cancel.cancel();
        let _ = tx.send(Err(Status::unknown(err))).await;
        return;
    }
}

enum SendFileError {
    /// The transfer ended meanwhile.
    Stopped,
    /// Reading the file failed midway.
    Read(String),
}

/// Opens a file for sending without following a symlink swapped in since
/// the walk, and without blocking on a FIFO.
fn open_for_send(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Streams the contents of one file as DATA packets plus the empty DATA
/// that ends it. A file that cannot be opened is sent empty (as fsutil).
fn send_file(
    id: u32,
    path: &Path,
    tx: &mpsc::Sender<Item>,
    cancel: &Cancel,
) -> Result<(), SendFileError> {
    if let Ok(mut file) = open_for_send(path) {
        loop {
            if cancel.is_cancelled() {
                return Err(SendFileError::Stopped);
            }
            let mut buf = vec![0u8; CHUNK_SIZE];
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(SendFileError::Read(format!(
                        "failed to read {}: {e}",
                        path.display()
                    )))
                }
            };
            buf.truncate(n);
            tx.blocking_send(Ok(data_packet(id, buf)))
                .map_err(|_| SendFileError::Stopped)?;
        }
    }
    tx.blocking_send(Ok(data_packet(id, Vec::new())))
        .map_err(|_| SendFileError::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filesync::walk::FilterOptions;

    /// Drives a transfer with a scripted receiver: `respond` sees every
    /// packet sent back and returns the packets to answer with. Returns
    /// everything sent back.
    async fn run(root: &Path, mut respond: impl FnMut(&Packet) -> Vec<Packet>) -> Vec<Item> {
        let walker = Walker::new(root, &FilterOptions::default()).expect("walker");
        let (in_tx, in_rx) = mpsc::channel::<Result<Packet, Status>>(16);
        let mut out = start(walker, tokio_stream::wrappers::ReceiverStream::new(in_rx));
        let mut got = Vec::new();
        while let Some(item) = out.next().await {
            if let Ok(p) = &item {
                for answer in respond(p) {
                    in_tx.send(Ok(answer)).await.expect("send");
                }
            }
            got.push(item);
        }
        got
    }

    fn is_terminator(p: &Packet) -> bool {
        p.r#type == PacketType::PacketStat as i32 && p.stat.is_none()
    }

    /// Answers the terminator STAT with `script`.
    fn after_stats(script: Vec<Packet>) -> impl FnMut(&Packet) -> Vec<Packet> {
        let mut script = Some(script);
        move |p| {
            if is_terminator(p) {
                script.take().unwrap_or_default()
            } else {
                Vec::new()
            }
        }
    }

    fn req(id: u32) -> Packet {
        Packet {
            id,
            ..packet(PacketType::PacketReq)
        }
    }

    #[tokio::test]
    async fn invalid_request_id_aborts() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        std::fs::create_dir(tmp.path().join("d"))?;
        std::fs::write(tmp.path().join("f"), "x")?;
        // Entry 0 is the directory: not requestable.
        let got = run(tmp.path(), after_stats(vec![req(0)])).await;
        let last = got.last().expect("items");
        assert!(matches!(last, Err(s) if s.message().contains("invalid file id 0")));
        Ok(())
    }

    #[tokio::test]
    async fn duplicate_request_aborts() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        std::fs::write(tmp.path().join("f"), "x")?;
        let got = run(tmp.path(), after_stats(vec![req(0), req(0)])).await;
        assert!(matches!(got.last(), Some(Err(s)) if s.message().contains("invalid file id 0")));
        Ok(())
    }

    #[tokio::test]
    async fn receiver_error_aborts() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let err = Packet {
            data: b"disk full".to_vec(),
            ..packet(PacketType::PacketErr)
        };
        let got = run(tmp.path(), after_stats(vec![err])).await;
        assert!(
            matches!(got.last(), Some(Err(s)) if s.message() == "error from receiver: disk full")
        );
        Ok(())
    }

    #[tokio::test]
    async fn fin_is_answered_and_ends_stream() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        std::fs::write(tmp.path().join("f"), "hello")?;
        let got = run(tmp.path(), |p| {
            if is_terminator(p) {
                vec![req(0)]
            } else if p.r#type == PacketType::PacketData as i32 && p.data.is_empty() {
                vec![packet(PacketType::PacketFin)]
            } else {
                Vec::new()
            }
        })
        .await;
        let got: Vec<Packet> = got.into_iter().collect::<Result<_, _>>().expect("no error");
        let kinds: Vec<i32> = got.iter().map(|p| p.r#type).collect();
        assert_eq!(kinds.first(), Some(&(PacketType::PacketStat as i32)));
        assert_eq!(kinds.last(), Some(&(PacketType::PacketFin as i32)));
        let data: Vec<u8> = got
            .iter()
            .filter(|p| p.r#type == PacketType::PacketData as i32)
            .flat_map(|p| p.data.clone())
            .collect();
        assert_eq!(data, b"hello");
        Ok(())
    }
}
