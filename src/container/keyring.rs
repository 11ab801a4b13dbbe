//! The keys of this process: the master keys unlocked so far, and where a secret comes
//! from when an encrypted image needs one.
//!
//! One keyring per process, because an image is opened from many places (a chain, a
//! backup-set scan, a catalog query, a mount, the web server) and each chain must be
//! unlocked once, not once per open. A front-end says where secrets come from
//! ([`configure`]); an image that needs a key the keyring lacks asks for it then.

use super::crypto::{KeySlots, MasterKey, Secret};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// The environment variable a passphrase may come from (for scripts: it is visible to
/// processes of the same user through /proc on Linux, so a passphrase file is better).
pub const PASSPHRASE_ENV: &str = "STRATA_PASSPHRASE";

/// Where secrets come from.
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// A file whose contents (without a final line ending) are the passphrase.
    pub passphrase_file: Option<PathBuf>,
    /// A key file: its whole contents are the key.
    pub key_file: Option<PathBuf>,
    /// Ask on the terminal when no other source gives a secret.
    pub prompt: bool,
}

struct Keyring {
    masters: Vec<MasterKey>,
    secrets: Vec<Secret>,
    sources: KeySources,
    loaded: bool,
    /// A file or the environment gave a secret (not only the terminal).
    named: bool,
}

static KEYRING: Mutex<Keyring> = Mutex::new(Keyring {
    masters: Vec::new(),
    secrets: Vec::new(),
    sources: KeySources {
        passphrase_file: None,
        key_file: None,
        prompt: false,
    },
    loaded: false,
    named: false,
});

fn keyring() -> std::sync::MutexGuard<'static, Keyring> {
    // A panic while the lock was held leaves nothing half-changed worth refusing.
    KEYRING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sets where secrets come from (the command line's options).
pub fn configure(sources: KeySources) {
    let mut k = keyring();
    k.sources = sources;
    k.loaded = false;
}

/// True when a secret can be had: a file or the environment gives one, or there is a
/// terminal to ask on.
pub fn has_source() -> bool {
    let k = keyring();
    !k.secrets.is_empty()
        || k.sources.key_file.is_some()
        || k.sources.passphrase_file.is_some()
        || env_passphrase().is_some()
        || (k.sources.prompt && has_terminal())
}

/// The passphrase in the environment, if set and not empty.
fn env_passphrase() -> Option<Secret> {
    std::env::var_os(PASSPHRASE_ENV)
        .filter(|v| !v.is_empty())
        .map(|v| Secret::Passphrase(Zeroizing::new(v.into_encoded_bytes())))
}

/// True when a passphrase can be asked on a terminal.
fn has_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() || std::io::stderr().is_terminal()
}

/// Asks on the terminal no more (a server, once it has started).
pub fn stop_asking() {
    keyring().sources.prompt = false;
}

/// Adds an unlocked master key (the one a new chain was created with).
pub fn remember(master: &MasterKey) {
    let mut k = keyring();
    if !k.masters.iter().any(|m| m.key_id() == master.key_id()) {
        k.masters.push(master.clone());
    }
}

/// Adds a secret to try (tests and library callers).
pub fn add_secret(secret: Secret) {
    keyring().secrets.push(secret);
}

/// The unlocked master key named `key_id`, if any.
pub fn master(key_id: &[u8; 16]) -> Option<MasterKey> {
    keyring()
        .masters
        .iter()
        .find(|m| m.key_id() == *key_id)
        .cloned()
}

/// Reads a passphrase file: its contents without one final line ending.
pub fn read_passphrase_file(path: &Path) -> Result<Secret> {
    let mut bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| Error::io(path, "cannot read the passphrase file", e))?,
    );
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: the passphrase file is empty",
            path.display()
        )));
    }
    Ok(Secret::Passphrase(bytes))
}

/// Reads a key file: its whole contents. At least 16 bytes, so that a key file holds
/// enough to be guessed no faster than a key; at most 1 MiB.
pub fn read_key_file(path: &Path) -> Result<Secret> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(path, "cannot read the key file", e))?;
    if !meta.is_file() || meta.len() > 1 << 20 || meta.len() < 16 {
        return Err(Error::Invalid(format!(
            "{}: a key file must be a file of 16 bytes to 1 MiB (make one with \
             `head -c 32 /dev/urandom > FILE`)",
            path.display()
        )));
    }
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| Error::io(path, "cannot read the key file", e))?,
    );
    Ok(Secret::KeyFile(bytes))
}

/// Asks for a passphrase on the terminal (without echo), or None when there is none.
pub fn prompt(question: &str) -> Result<Option<Secret>> {
    if !has_terminal() {
        return Ok(None);
    }
    let answer = rpassword::prompt_password(question)
        .map_err(|e| Error::io("the terminal", "cannot read a passphrase from", e))?;
    Ok(Some(Secret::Passphrase(Zeroizing::new(
        answer.into_bytes(),
    ))))
}

/// Loads the secrets the configured files and the environment hold, once.
fn load_sources(k: &mut Keyring) -> Result<()> {
    if k.loaded {
        return Ok(());
    }
    k.loaded = true;
    if let Some(p) = k.sources.key_file.clone() {
        k.secrets.push(read_key_file(&p)?);
    }
    if let Some(p) = k.sources.passphrase_file.clone() {
        k.secrets.push(read_passphrase_file(&p)?);
    }
    k.secrets.extend(env_passphrase());
    k.named = !k.secrets.is_empty();
    Ok(())
}

fn try_slots(secrets: &[Secret], slots: &KeySlots, key_id: &[u8; 16]) -> Option<MasterKey> {
    secrets
        .iter()
        .find_map(|s| slots.slots.iter().find_map(|slot| slot.unlock(s, key_id)))
}

/// The master key named `key_id` for the image at `path` whose key slots are `slots`:
/// already unlocked, or unlocked now with a given secret, or with one asked on the
/// terminal (three tries).
pub fn unlock(path: &Path, key_id: &[u8; 16], slots: &KeySlots) -> Result<MasterKey> {
    let mut k = keyring();
    if let Some(m) = k.masters.iter().find(|m| m.key_id() == *key_id) {
        return Ok(m.clone());
    }
    load_sources(&mut k)?;
    let found = try_slots(&k.secrets, slots, key_id);
    if let Some(m) = found {
        k.masters.push(m.clone());
        return Ok(m);
    }
    let given = !k.secrets.is_empty();
    // A secret the user named that does not fit is the answer; asking on the terminal
    // then would hide that the file or the environment holds the wrong one.
    if k.sources.prompt && !k.named {
        for attempt in 0..3 {
            let question = if attempt == 0 {
                format!("Passphrase for {}: ", path.display())
            } else {
                "Wrong passphrase; try again: ".to_string()
            };
            let Some(secret) = prompt(&question)? else {
                break;
            };
            if let Some(m) = try_slots(std::slice::from_ref(&secret), slots, key_id) {
                k.secrets.push(secret);
                k.masters.push(m.clone());
                return Ok(m);
            }
            if attempt == 2 {
                return Err(wrong(path, slots, "the passphrase typed"));
            }
        }
    }
    if given {
        let what = if k.secrets.len() == 1 {
            format!("the {} given", k.secrets[0].what())
        } else {
            "none of the passphrases and key files given".into()
        };
        return Err(wrong(path, slots, &what));
    }
    Err(Error::Key {
        path: path.into(),
        detail: format!(
            "the image is encrypted: give its passphrase (--passphrase-file FILE, the \
             {PASSPHRASE_ENV} environment variable, or on a terminal) or its key file \
             (--key-file FILE)"
        ),
    })
}

fn wrong(path: &Path, slots: &KeySlots, what: &str) -> Error {
    let n = slots.slots.len();
    Error::Key {
        path: path.into(),
        detail: format!(
            "wrong key: {what} opens none of its {n} key slot{}",
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// A new secret for a new key slot: the key file or passphrase file named, the
/// environment's passphrase (when `env`), or a passphrase asked twice on the terminal.
pub fn new_secret(
    passphrase_file: Option<&Path>,
    key_file: Option<&Path>,
    env: bool,
) -> Result<Secret> {
    if let Some(p) = key_file {
        return read_key_file(p);
    }
    if let Some(p) = passphrase_file {
        return read_passphrase_file(p);
    }
    if let Some(s) = env_passphrase().filter(|_| env) {
        return Ok(s);
    }
    let Some(first) = prompt("New passphrase: ")? else {
        return Err(Error::Invalid(format!(
            "a passphrase is needed and there is no terminal to ask it on: give \
             --passphrase-file FILE, --key-file FILE or {PASSPHRASE_ENV}"
        )));
    };
    let Some(second) = prompt("Repeat the passphrase: ")? else {
        return Err(Error::Invalid(
            "no terminal to repeat the passphrase on".into(),
        ));
    };
    match (&first, &second) {
        (Secret::Passphrase(a), Secret::Passphrase(b)) if a == b && !a.is_empty() => Ok(first),
        (Secret::Passphrase(a), _) if a.is_empty() => {
            Err(Error::Invalid("the passphrase is empty".into()))
        }
        _ => Err(Error::Invalid("the two passphrases differ".into())),
    }
}
