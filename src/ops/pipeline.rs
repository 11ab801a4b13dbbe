//! The chunk pipeline shared by `create` and `consolidate`:
//! producer thread → N compression workers → ordered writer (the calling thread).
//!
//! The producer alone decides which blocks go into which chunk ([`Packer`]), and chunks are
//! appended in that order, so the image bytes do not depend on the number of workers.

use crate::container::chunk::SealedChunk;
use crate::container::writer::ImageWriter;
use crate::error::{Error, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;

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

/// Collects blocks into chunks and hands full chunks to the workers.
pub struct Packer {
    tx: Sender<Job>,
    seq: u64,
    chunk_size: usize,
    block_size: usize,
    raw: Vec<u8>,
    blocks: Vec<u64>,
    hashes: Vec<u64>,
}

impl Packer {
    /// Adds one block (`block_size` bytes) for disk block `block`, with its xxh3-64 hash.
    /// Returns false when the writer has stopped (it reports why); the producer should
    /// then return.
    pub fn push(&mut self, block: u64, data: &[u8], hash: u64) -> bool {
        debug_assert_eq!(data.len(), self.block_size);
        self.raw.extend_from_slice(data);
        self.blocks.push(block);
        self.hashes.push(hash);
        if self.raw.len() >= self.chunk_size {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        if self.raw.is_empty() {
            return true;
        }
        let per = self.chunk_size / self.block_size;
        let job = Job {
            seq: self.seq,
            raw: std::mem::replace(&mut self.raw, Vec::with_capacity(self.chunk_size)),
            blocks: std::mem::replace(&mut self.blocks, Vec::with_capacity(per)),
            hashes: std::mem::replace(&mut self.hashes, Vec::with_capacity(per)),
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
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut packer = Packer {
                tx: job_tx,
                seq: 0,
                chunk_size,
                block_size,
                raw: Vec::with_capacity(chunk_size),
                blocks: Vec::new(),
                hashes: Vec::new(),
            };
            let out = produce(&mut packer);
            if out.is_ok() {
                packer.flush();
            }
            out
        });
        let mut workers = Vec::new();
        for _ in 0..threads {
            let (rx, tx) = (job_rx.clone(), done_tx.clone());
            workers.push(s.spawn(move || compress(rx, tx, block_size, level)));
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

fn compress(jobs: Receiver<Job>, done: Sender<Sealed>, block_size: usize, level: i32) {
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
        let chunk = SealedChunk::seal(&job.raw, block_size, Some(job.hashes), &mut compressor);
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
