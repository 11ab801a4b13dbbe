//! The chunk pipeline shared by `create` and `consolidate`:
//! producer thread → N compression workers → ordered writer (the calling thread).
//!
//! The producer alone decides which blocks go into which chunk ([`Packer`]), and chunks are
//! appended in that order, so the image bytes do not depend on the number of workers.

use crate::container::chunk::SealedChunk;
use crate::container::crypto::ImageKey;
use crate::container::writer::ImageWriter;
use crate::error::{Error, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::Arc;

struct Job {
    seq: u64,
    raw: Vec<u8>,
    blocks: Vec<u64>,
    hashes: Vec<u64>,
}

struct Sealed {
    seq: u64,
    chunk: std::io::Result<SealedChunk>,
    blocks: Vec<u64>,
}

/// Blocks waiting to fill one chunk.
struct Pending {
    /// Uncompressed bytes at which the chunk is full.
    size: usize,
    raw: Vec<u8>,
    blocks: Vec<u64>,
    hashes: Vec<u64>,
}

impl Pending {
    fn new(size: usize) -> Pending {
        Pending {
            size,
            raw: Vec::with_capacity(size),
            blocks: Vec::new(),
            hashes: Vec::new(),
        }
    }
}

/// Collects blocks into chunks and hands full chunks to the workers. Filesystem metadata
/// (directories, inode tables) fills chunks of its own, smaller ones, so that a directory
/// walk decompresses metadata only and little of it per step.
pub struct Packer {
    tx: Sender<Job>,
    seq: u64,
    block_size: usize,
    data: Pending,
    meta: Pending,
}

/// Largest chunk of metadata blocks. Smaller chunks cost a walk less per directory it
/// visits out of order, and compress a little worse (see docs/PERFORMANCE.md).
pub const META_CHUNK_SIZE: usize = 256 << 10;

impl Packer {
    /// Adds one block (`block_size` bytes) for disk block `block`, with its xxh3-64 hash.
    /// Returns false when the writer has stopped (it reports why); the producer should
    /// then return.
    pub fn push(&mut self, block: u64, data: &[u8], hash: u64) -> bool {
        self.push_to(false, block, data, hash)
    }

    /// As [`Packer::push`], for a block of filesystem metadata.
    pub fn push_meta(&mut self, block: u64, data: &[u8], hash: u64) -> bool {
        self.push_to(true, block, data, hash)
    }

    fn push_to(&mut self, meta: bool, block: u64, data: &[u8], hash: u64) -> bool {
        debug_assert_eq!(data.len(), self.block_size);
        let p = if meta { &mut self.meta } else { &mut self.data };
        p.raw.extend_from_slice(data);
        p.blocks.push(block);
        p.hashes.push(hash);
        if p.raw.len() >= p.size {
            return self.flush(meta);
        }
        true
    }

    fn flush(&mut self, meta: bool) -> bool {
        let p = if meta { &mut self.meta } else { &mut self.data };
        if p.raw.is_empty() {
            return true;
        }
        let per = p.size / self.block_size;
        let job = Job {
            seq: self.seq,
            raw: std::mem::replace(&mut p.raw, Vec::with_capacity(p.size)),
            blocks: std::mem::replace(&mut p.blocks, Vec::with_capacity(per)),
            hashes: std::mem::replace(&mut p.hashes, Vec::with_capacity(per)),
        };
        self.seq += 1;
        self.tx.send(job).is_ok()
    }
}

/// Runs `produce` on a producer thread feeding `threads` zstd workers at `level`, and
/// appends the sealed chunks to `writer` in order. Returns what `produce` returned; a
/// write error wins over a producer error (the producer stops when the writer does).
pub fn run<T, F>(writer: &mut ImageWriter, threads: usize, level: i32, produce: F) -> Result<T>
where
    T: Send,
    F: FnOnce(&mut Packer) -> Result<T> + Send,
{
    let threads = threads.max(1);
    let (job_tx, job_rx) = bounded::<Job>(threads * 2);
    let (done_tx, done_rx) = bounded::<Sealed>(threads * 2);
    let block_size = writer.header().block_size as usize;
    let chunk_size = writer.header().chunk_size as usize;
    let sealing = writer.sealing();
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let meta_size = META_CHUNK_SIZE.min(chunk_size) / block_size * block_size;
            let mut packer = Packer {
                tx: job_tx,
                seq: 0,
                block_size,
                data: Pending::new(chunk_size),
                meta: Pending::new(meta_size.max(block_size)),
            };
            let out = produce(&mut packer);
            if out.is_ok() && packer.flush(false) {
                packer.flush(true);
            }
            out
        });
        let mut workers = Vec::new();
        for _ in 0..threads {
            let (rx, tx) = (job_rx.clone(), done_tx.clone());
            let sealing = sealing.clone();
            workers.push(s.spawn(move || compress(rx, tx, block_size, level, sealing)));
        }
        drop((job_rx, done_tx));
        let written = write_in_order(done_rx, writer);
        let produced = producer.join().expect("producer thread panicked");
        for w in workers {
            w.join().expect("compression thread panicked");
        }
        written?;
        produced
    })
}

/// Compresses each job, and seals it in an encrypted image (as chunk `first + seq`).
fn compress(
    jobs: Receiver<Job>,
    done: Sender<Sealed>,
    block_size: usize,
    level: i32,
    sealing: Option<(Arc<ImageKey>, usize)>,
) {
    let mut compressor = match zstd::bulk::Compressor::new(level) {
        Ok(c) => c,
        Err(e) => {
            // Report through the first job so the writer sees the failure in order.
            if let Ok(job) = jobs.recv() {
                let _ = done.send(Sealed {
                    seq: job.seq,
                    chunk: Err(e),
                    blocks: job.blocks,
                });
            }
            return;
        }
    };
    for job in jobs {
        let mut chunk = SealedChunk::seal(&job.raw, block_size, Some(job.hashes), &mut compressor);
        if let (Ok(c), Some((key, first))) = (&mut chunk, &sealing) {
            // A number past 2^32 is left unsealed: the writer refuses it with its message.
            let index = usize::try_from(job.seq)
                .ok()
                .and_then(|s| s.checked_add(*first))
                .and_then(|n| u32::try_from(n).ok());
            if let Some(index) = index {
                c.encrypt(key, index);
            }
        }
        let sealed = Sealed {
            seq: job.seq,
            chunk,
            blocks: job.blocks,
        };
        if done.send(sealed).is_err() {
            return;
        }
    }
}

fn write_in_order(done: Receiver<Sealed>, writer: &mut ImageWriter) -> Result<()> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    for sealed in done {
        pending.insert(sealed.seq, sealed);
        while let Some(s) = pending.remove(&next) {
            let chunk = s
                .chunk
                .map_err(|e| Error::io("zstd", "compression failed", e))?;
            writer.append(&chunk, &s.blocks)?;
            next += 1;
        }
    }
    Ok(())
}
