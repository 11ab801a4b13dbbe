//! A catalog stored as a change to its parent's (docs/FORMAT.md, "Catalog section"): an
//! incremental point of a day's changes lists a few hundred new entries and says which
//! runs of its parent's entries it keeps, instead of every entry again.
//!
//! A kept run is a stretch of the parent's entries, in order, each as it was but for its
//! parent index, which follows the parent's own entry to where it now is: the writer walks
//! a point in the order it walked the parent ([`super::build`]), so whatever did not
//! change comes out in long runs.

// Decodes bytes read from disk: no silent truncating `as` on them.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use super::{
    get_entries, get_entry, put_entry, Catalog, Check, Entry, In, Out, Volume, ROOT_PARENT,
};
use crate::container::catalog::DELTA_MAGIC;

/// Catalogs a writer stores as changes in a row before it stores a whole one again, so
/// that opening a point never goes back through more than this many.
pub const MAX_WRITTEN_DEPTH: u32 = 16;
/// More than a reader follows (a damaged depth cannot make it recurse without end).
const MAX_READ_DEPTH: u32 = 1024;

/// No entry of the parent.
const NONE: u32 = u32::MAX;

/// A catalog as a change to the catalog of its image's parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// The image whose catalog this changes.
    pub base: [u8; 16],
    /// How many changes lead back to a whole catalog (1: the base's is whole).
    pub depth: u32,
    pub block_size: u32,
    pub volumes: Vec<DeltaVolume>,
}

/// One filesystem of a [`Delta`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaVolume {
    /// Listed whole (walked, or new since the base).
    Whole(Volume),
    Changed(Changed),
}

/// The base's volume `base_volume` (of `base_entries` entries) changed by `ops` into
/// `entries` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub name: String,
    pub fs: String,
    pub base_volume: u32,
    pub base_entries: u64,
    pub entries: u64,
    pub ops: Vec<Op>,
}

/// One step of rebuilding a volume from its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The base's entries `from..from + count`, each under the entry its base parent
    /// became.
    Keep { from: u32, count: u32 },
    /// A new entry; `base` names the base entry it replaces (or `u32::MAX`), so that
    /// kept children of that entry go under it.
    New { base: u32, entry: Box<Entry> },
}

/// Whether `a` and `b` are equal apart from their parents. Destructured so that a new
/// field cannot be forgotten here.
fn same_but_parent(a: &Entry, b: &Entry) -> bool {
    let Entry {
        parent: _,
        name,
        kind,
        size,
        allocated,
        ino,
        nlink,
        mode,
        uid,
        gid,
        mtime,
        ctime,
        atime,
        crtime,
        id,
        streams,
        unreadable,
    } = a;
    *name == b.name
        && *kind == b.kind
        && *size == b.size
        && *allocated == b.allocated
        && *ino == b.ino
        && *nlink == b.nlink
        && *mode == b.mode
        && *uid == b.uid
        && *gid == b.gid
        && *mtime == b.mtime
        && *ctime == b.ctime
        && *atime == b.atime
        && *crtime == b.crtime
        && *id == b.id
        && *streams == b.streams
        && *unreadable == b.unreadable
}

/// Where the base's entries went while a volume is rebuilt: the writer and the reader
/// keep it alike, so the writer knows what a kept run will give.
struct Moves(Vec<u32>);

impl Moves {
    /// The new parent index of a kept copy of base entry `b` (with its base parent).
    fn parent_of(&self, b: &Entry) -> Option<u32> {
        if b.parent == ROOT_PARENT {
            return Some(ROOT_PARENT);
        }
        let p = *self.0.get(usize::try_from(b.parent).ok()?)?;
        (p != NONE).then_some(p)
    }
}

impl DeltaVolume {
    /// `new` (volume of the new point) as a change to `base` (its `base_volume`), given
    /// for each new entry the base entry it stems from (`u32::MAX`: none).
    pub fn changes(new: &Volume, base: &Volume, base_volume: u32, from: &[u32]) -> DeltaVolume {
        let mut moves = Moves(vec![NONE; base.entries.len()]);
        let mut ops: Vec<Op> = Vec::new();
        for (i, e) in new.entries.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(NONE);
            let k = from.get(i as usize).copied().unwrap_or(NONE);
            let b = usize::try_from(k).ok().and_then(|k| base.entries.get(k));
            let kept =
                b.is_some_and(|b| same_but_parent(e, b) && moves.parent_of(b) == Some(e.parent));
            if kept {
                match ops.last_mut() {
                    Some(Op::Keep { from, count }) if from.checked_add(*count) == Some(k) => {
                        *count += 1;
                    }
                    _ => ops.push(Op::Keep { from: k, count: 1 }),
                }
            } else {
                ops.push(Op::New {
                    base: if b.is_some() { k } else { NONE },
                    entry: Box::new(e.clone()),
                });
            }
            if b.is_some() {
                moves.0[k as usize] = i;
            }
        }
        DeltaVolume::Changed(Changed {
            name: new.name.clone(),
            fs: new.fs.clone(),
            base_volume,
            base_entries: base.entries.len() as u64,
            entries: new.entries.len() as u64,
            ops,
        })
    }

    /// The volume this gives over `base` (the base catalog), each entry checked as it is
    /// placed (see [`Catalog::check`]).
    fn apply(self, base: &Catalog, check: &mut Check) -> Result<Volume, String> {
        let Changed {
            name,
            fs,
            base_volume,
            base_entries,
            entries,
            ops,
        } = match self {
            DeltaVolume::Whole(v) => {
                check.whole(&v)?;
                return Ok(v);
            }
            DeltaVolume::Changed(c) => c,
        };
        let bv = usize::try_from(base_volume)
            .ok()
            .and_then(|i| base.volumes.get(i))
            .filter(|v| v.name == name && v.fs == fs && v.entries.len() as u64 == base_entries)
            .ok_or_else(|| format!("{name}: its base volume {base_volume} is not there"))?;
        let mut moves = Moves(vec![NONE; bv.entries.len()]);
        let mut tree = check.volume();
        // `entries` was checked against the bytes it was decoded from.
        let mut out: Vec<Entry> = Vec::with_capacity(usize::try_from(entries).unwrap_or(0));
        for op in ops {
            match op {
                Op::Keep { from, count } => {
                    let range = usize::try_from(from)
                        .ok()
                        .zip(usize::try_from(count).ok())
                        .and_then(|(a, n)| Some(a..a.checked_add(n)?))
                        .filter(|r| r.end <= bv.entries.len())
                        .ok_or_else(|| {
                            format!("{name}: kept entries {from}+{count} are not in its base")
                        })?;
                    for k in range {
                        let b = &bv.entries[k];
                        let parent = moves
                            .parent_of(b)
                            .ok_or_else(|| format!("{name}: kept entry {k} has no parent"))?;
                        moves.0[k] = u32::try_from(out.len()).unwrap_or(NONE);
                        let mut e = b.clone();
                        e.parent = parent;
                        tree.push(&out, &e)?;
                        out.push(e);
                    }
                }
                Op::New { base, entry } => {
                    if base != NONE {
                        let slot = usize::try_from(base)
                            .ok()
                            .and_then(|b| moves.0.get_mut(b))
                            .ok_or_else(|| format!("{name}: base entry {base} is not there"))?;
                        *slot = u32::try_from(out.len()).unwrap_or(NONE);
                    }
                    tree.push(&out, &entry)?;
                    out.push(*entry);
                }
            }
            if out.len() as u64 > entries {
                return Err(format!("{name}: more than its {entries} entries"));
            }
        }
        if out.len() as u64 != entries {
            return Err(format!("{name}: {} entries, not {entries}", out.len()));
        }
        check.add(tree);
        Ok(Volume {
            name,
            fs,
            entries: out,
        })
    }
}

impl Delta {
    /// The uncompressed bytes (docs/FORMAT.md).
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Out(DELTA_MAGIC.to_vec());
        o.0.extend_from_slice(&self.base);
        o.u32(self.depth);
        o.u32(self.block_size);
        o.u32(u32::try_from(self.volumes.len()).unwrap_or(u32::MAX));
        for v in &self.volumes {
            match v {
                DeltaVolume::Whole(v) => {
                    o.str(&v.name);
                    o.str(&v.fs);
                    o.u8(0);
                    o.u64(v.entries.len() as u64);
                    for e in &v.entries {
                        put_entry(&mut o, e);
                    }
                }
                DeltaVolume::Changed(c) => {
                    o.str(&c.name);
                    o.str(&c.fs);
                    o.u8(1);
                    o.u32(c.base_volume);
                    o.u64(c.base_entries);
                    o.u64(c.entries);
                    o.u64(c.ops.len() as u64);
                    for op in &c.ops {
                        match op {
                            Op::Keep { from, count } => {
                                o.u8(0);
                                o.u32(*from);
                                o.u32(*count);
                            }
                            Op::New { base, entry } => {
                                o.u8(1);
                                o.u32(*base);
                                put_entry(&mut o, entry);
                            }
                        }
                    }
                }
            }
        }
        o.0
    }

    /// Decodes the bytes [`Delta::encode`] makes (bounds checked; the entries' tree is
    /// checked once applied).
    pub fn decode(buf: &[u8]) -> Result<Delta, String> {
        let mut r = In { buf, at: 0 };
        if r.take(DELTA_MAGIC.len())? != DELTA_MAGIC {
            return Err("not a catalog change".into());
        }
        let base: [u8; 16] = r.take(16)?.try_into().expect("16");
        let depth = r.u32()?;
        if depth == 0 || depth > MAX_READ_DEPTH {
            return Err(format!("impossible depth {depth}"));
        }
        let block_size = r.u32()?;
        let n = r.u32()?;
        let n = r.count(u64::from(n), 9)?;
        let mut volumes = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.str()?.into_string();
            let fs = r.str()?.into_string();
            volumes.push(match r.u8()? {
                0 => DeltaVolume::Whole(Volume {
                    name,
                    fs,
                    entries: get_entries(&mut r)?,
                }),
                1 => {
                    let base_volume = r.u32()?;
                    let base_entries = r.u64()?;
                    let entries = r.u64()?;
                    let count = r.u64()?;
                    // A kept run holds at least one entry: the entries bound the ops.
                    if count > entries {
                        return Err(format!("{name}: {count} steps for {entries} entries"));
                    }
                    let count = r.count(count, 5)?;
                    let mut ops = Vec::with_capacity(count);
                    let mut made = 0u64;
                    for i in 0..count {
                        let op = match r.u8()? {
                            0 => {
                                let (from, count) = (r.u32()?, r.u32()?);
                                made = made.saturating_add(u64::from(count));
                                Op::Keep { from, count }
                            }
                            1 => {
                                made = made.saturating_add(1);
                                let base = r.u32()?;
                                Op::New {
                                    base,
                                    entry: Box::new(get_entry(&mut r, i)?),
                                }
                            }
                            b => return Err(format!("{name}: unknown step {b}")),
                        };
                        ops.push(op);
                    }
                    if made != entries {
                        return Err(format!("{name}: steps give {made} entries, not {entries}"));
                    }
                    DeltaVolume::Changed(Changed {
                        name,
                        fs,
                        base_volume,
                        base_entries,
                        entries,
                        ops,
                    })
                }
                f => return Err(format!("{name}: unknown form {f}")),
            });
        }
        if r.at != buf.len() {
            return Err(format!("{} bytes follow the last volume", buf.len() - r.at));
        }
        Ok(Delta {
            base,
            depth,
            block_size,
            volumes,
        })
    }

    /// The entries in the catalog this gives, without its base.
    pub fn entry_count(&self) -> u64 {
        self.volumes
            .iter()
            .map(|v| match v {
                DeltaVolume::Whole(v) => v.entries.len() as u64,
                DeltaVolume::Changed(c) => c.entries,
            })
            .sum()
    }

    /// The catalog this gives over `base`, the catalog of the image it names, checked as
    /// [`Catalog::check`] does.
    pub fn apply(self, base: &Catalog) -> Result<Catalog, String> {
        if base.block_size != self.block_size {
            return Err(format!(
                "block size {} over a base of {}",
                self.block_size, base.block_size
            ));
        }
        let mut check = Check::default();
        let volumes = self
            .volumes
            .into_iter()
            .map(|v| v.apply(base, &mut check))
            .collect::<Result<Vec<Volume>, String>>()?;
        check.finish()?;
        Ok(Catalog {
            block_size: self.block_size,
            volumes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::browse::NodeKind;

    fn entry(parent: u32, name: &str, kind: NodeKind, ino: u64, size: u64) -> Entry {
        let mut e = Entry::bare(parent, name, kind, size);
        e.ino = Some(ino);
        e.nlink = Some(1);
        e.id = Some([u8::try_from(ino % 251).unwrap(); 16]);
        e
    }

    /// A root with directories `a` and `b` of three files each.
    fn base() -> Catalog {
        let mut e = vec![entry(ROOT_PARENT, "", NodeKind::Dir, 2, 0)];
        e.push(entry(0, "a", NodeKind::Dir, 10, 0));
        e.push(entry(0, "b", NodeKind::Dir, 20, 0));
        for (d, at) in [(20u64, 2u32), (10, 1)] {
            for f in 1..=3 {
                e.push(entry(at, &format!("f{f}"), NodeKind::File, d + f, f * 100));
            }
        }
        Catalog {
            block_size: 4096,
            volumes: vec![Volume {
                name: "p1".into(),
                fs: "ext4".into(),
                entries: e,
            }],
        }
    }

    /// `base` after one change: b/f2 grown, a/f1 gone, a/new added.
    fn changed() -> (Catalog, Vec<u32>) {
        let b = base();
        let v = &b.volumes[0].entries;
        let mut e: Vec<Entry> = v[..3].to_vec();
        let mut from: Vec<u32> = vec![0, 1, 2];
        e.push(v[3].clone());
        let mut grown = v[4].clone();
        grown.size += 1;
        e.push(grown);
        e.push(v[5].clone());
        from.extend([3, 4, 5]);
        e.push(v[7].clone());
        e.push(v[8].clone());
        e.push(entry(1, "new", NodeKind::File, 99, 7));
        from.extend([7, 8, u32::MAX]);
        let c = Catalog {
            block_size: 4096,
            volumes: vec![Volume {
                name: "p1".into(),
                fs: "ext4".into(),
                entries: e,
            }],
        };
        (c, from)
    }

    fn delta() -> Delta {
        let (new, from) = changed();
        Delta {
            base: [7; 16],
            depth: 1,
            block_size: 4096,
            volumes: vec![DeltaVolume::changes(
                &new.volumes[0],
                &base().volumes[0],
                0,
                &from,
            )],
        }
    }

    #[test]
    fn a_change_round_trips_and_gives_the_catalog_it_was_made_from() {
        let d = delta();
        let DeltaVolume::Changed(Changed { ops, .. }) = &d.volumes[0] else {
            panic!("a change");
        };
        // Kept: the root and both directories, b/f1, b/f3, a/f2 and a/f3 in runs.
        assert_eq!(
            ops.iter().filter(|o| matches!(o, Op::New { .. })).count(),
            2,
            "{ops:?}"
        );
        let back = Delta::decode(&d.encode()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.entry_count(), 9);
        assert_eq!(back.apply(&base()).unwrap(), changed().0);
    }

    #[test]
    fn a_change_over_the_wrong_base_is_refused() {
        let mut other = base();
        other.volumes[0].entries.pop();
        assert!(delta().apply(&other).is_err());
        let mut renamed = base();
        renamed.volumes[0].name = "p2".into();
        assert!(delta().apply(&renamed).is_err());
    }

    #[test]
    fn every_truncation_and_many_flips_are_refused_or_applied_without_panic() {
        let bytes = delta().encode();
        for n in 0..bytes.len() {
            assert!(Delta::decode(&bytes[..n]).is_err(), "{n}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                if let Ok(d) = Delta::decode(&b) {
                    // Whatever it gives is a catalog every reader can use.
                    if let Ok(c) = d.apply(&base()) {
                        c.check().unwrap();
                    }
                }
            }
        }
    }
}
