//! `strata key` and the options every command shares for encrypted images.

use super::{json, out};
use crate::container::crypto::{KdfCost, DEFAULT_KDF};
use crate::container::keyring;
use crate::error::Result;
use crate::ops::keys;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Where the key of an encrypted image comes from (every command takes these).
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// A file holding the passphrase of encrypted images (one line). Without it, and
    /// without STRATA_PASSPHRASE, the passphrase is asked on the terminal.
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// A key file that opens encrypted images (its whole contents are the key).
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

impl KeyArgs {
    /// Tells the keyring where secrets come from.
    pub fn configure(&self) {
        keyring::configure(keyring::KeySources {
            passphrase_file: self.passphrase_file.clone(),
            key_file: self.key_file.clone(),
            prompt: true,
        });
    }
}

/// The Argon2id cost of a new passphrase slot.
#[derive(Debug, Args)]
pub struct KdfArgs {
    /// Memory the passphrase derivation takes, in MiB (more is slower to guess).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_KDF.memory_kib / 1024,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub kdf_memory: u32,
    /// Passes of the passphrase derivation over its memory.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KDF.passes,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub kdf_passes: u32,
}

impl KdfArgs {
    /// The cost asked.
    pub fn cost(&self) -> KdfCost {
        KdfCost {
            memory_kib: self.kdf_memory * 1024,
            passes: self.kdf_passes,
            lanes: 1,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the key slots of an encrypted image (or of every image in a directory).
    List {
        /// An image file, or a directory of images.
        image: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a passphrase or key file to an image (or to every image in a directory),
    /// unlocking it with a key it already has. No data is rewritten.
    Add {
        /// An image file, or a directory of images (give the directory to change a whole
        /// chain: each image holds its own copy of the slots).
        image: PathBuf,
        /// Read the new passphrase from this file instead of asking it twice.
        #[arg(long, value_name = "FILE", conflicts_with = "new_key_file")]
        new_passphrase_file: Option<PathBuf>,
        /// Add this key file instead of a passphrase.
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Remove a key slot (its number from `key list` of IMAGE, or of the first image of
    /// DIR: the same slot is removed from every image holding it), unlocking with any of
    /// the image's keys first. The last slot cannot be removed.
    Remove {
        /// An image file, or a directory of images.
        image: PathBuf,
        /// The slot number.
        slot: usize,
    },
}

fn warn_skipped(done: &keys::Outcome) {
    for (p, why) in &done.skipped {
        eprintln!("strata: warning: {}: left alone: {why}", p.display());
    }
}

/// Runs a `key` subcommand.
pub fn run(cmd: KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::List {
            image,
            json: as_json,
        } => {
            let all = keys::list(&image)?;
            if as_json {
                return json(&all);
            }
            for img in all {
                out(&format!("{}  key {}", img.image.display(), img.key_id))?;
                for s in img.slots {
                    let cost = s.kdf.map_or_else(String::new, |c| {
                        format!(
                            "  Argon2id {} MiB, {} passes, {} lane{}",
                            c.memory_kib / 1024,
                            c.passes,
                            c.lanes,
                            if c.lanes == 1 { "" } else { "s" }
                        )
                    });
                    out(&format!(
                        "  slot {}: {}, added {}{cost}",
                        s.slot, s.kind, s.added
                    ))?;
                }
            }
            Ok(())
        }
        KeyCommand::Add {
            image,
            new_passphrase_file,
            new_key_file,
            kdf,
        } => {
            let secret = keyring::new_secret(
                new_passphrase_file.as_deref(),
                new_key_file.as_deref(),
                false,
            )?;
            let done = keys::add(&image, &secret, kdf.cost())?;
            for p in &done.changed {
                out(&format!("{}: {} added", p.display(), secret.what()))?;
            }
            warn_skipped(&done);
            Ok(())
        }
        KeyCommand::Remove { image, slot } => {
            let done = keys::remove(&image, slot)?;
            for p in &done.changed {
                out(&format!("{}: key slot removed", p.display()))?;
            }
            warn_skipped(&done);
            Ok(())
        }
    }
}
