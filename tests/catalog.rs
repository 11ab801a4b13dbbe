//! `strata find`, `history` and `diff` over the points of backup chains, against references
//! computed from what the kernel's ext4 driver, ntfs-3g and mtools show of the volume at
//! each point: every path with its type, size, sha256 of contents, link target, times, mode
//! and owner, and inode numbers with creation times to tell renames from a deletion and a
//! creation. Images whose catalog is damaged, or that have none, give the same answers.
//!
//! The ext4 and NTFS tests need root (loop and ntfs-3g mounts); under `CI=true` a missing
//! privilege is a failure. The FAT tests use mtools only.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Link,
}

impl Kind {
    /// The `type` strata prints.
    fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Link => "symlink",
        }
    }
}

/// One path of a volume at one point, as a reference reader shows it.
#[derive(Debug, Clone)]
struct Ent {
    kind: Kind,
    size: u64,
    /// sha256 of a file's data, a link's target, empty for a directory.
    content: String,
    /// Named streams (NTFS, ntfs-3g's `user.*` attributes): name -> sha256.
    streams: BTreeMap<String, String>,
    mtime: (i64, u32),
    mode: u32,
    uid: u32,
    gid: u32,
    /// Inode (or MFT record) number and creation time, where the filesystem has both.
    ident: Option<(u64, String)>,
}

/// Every path of a volume (`/` for its root), as strata names them on a bare volume.
type Manifest = BTreeMap<String, Ent>;

/// Who shows a volume to the reference walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// The kernel's ext4 driver: POSIX modes and owners, creation times through statx.
    Kernel,
    /// ntfs-3g: streams as `user.*` attributes, creation time as `system.ntfs_crtime`;
    /// modes and owners are the mount's, not the volume's.
    Ntfs3g,
    /// A tree copied out by mtools: no inode numbers, no modes.
    Mtools,
}

/// One chain point: its image, what the reference reader showed of the volume imaged, and
/// the wall-clock seconds between which `create` ran.
struct Point {
    image: PathBuf,
    manifest: Manifest,
    window: (u64, u64),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// The resolved path of an image, so that relative and absolute names compare.
fn canon(p: &Path) -> String {
    s(&std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// A value of an extended attribute of `p` (not following a link), if it has one.
fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut v = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and `v` is writable for its length.
    let len = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    (len >= 0).then(|| {
        v.truncate(len as usize);
        v
    })
}

/// Every entry below (and including) `root`, as `reader` shows it.
fn manifest_of(root: &Path, reader: Reader) -> Manifest {
    let mut out = Manifest::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let path = format!("/{}", s(p.strip_prefix(root).unwrap()));
        let ft = m.file_type();
        let (kind, content) = if ft.is_symlink() {
            (Kind::Link, s(&std::fs::read_link(&p).unwrap()))
        } else if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            (Kind::Dir, String::new())
        } else {
            assert!(ft.is_file(), "{path}: unexpected type");
            (Kind::File, sha256(&p))
        };
        let ident = match reader {
            Reader::Kernel => {
                let c = m
                    .created()
                    .unwrap_or_else(|e| panic!("{path}: no creation time: {e}"));
                let d = c.duration_since(UNIX_EPOCH).unwrap();
                Some((m.ino(), format!("{}.{:09}", d.as_secs(), d.subsec_nanos())))
            }
            Reader::Ntfs3g => {
                let c = xattr(&p, "system.ntfs_crtime")
                    .unwrap_or_else(|| panic!("{path}: no system.ntfs_crtime"));
                Some((m.ino(), hex(&c)))
            }
            Reader::Mtools => None,
        };
        let streams = if reader == Reader::Ntfs3g && kind != Kind::Link {
            user_xattrs(&p)
                .into_iter()
                .map(|(n, v)| (n.strip_prefix("user.").unwrap().to_string(), hex_sha(&v)))
                .collect()
        } else {
            BTreeMap::new()
        };
        out.insert(
            path,
            Ent {
                kind,
                size: m.len(),
                content,
                streams,
                mtime: (m.mtime(), m.mtime_nsec() as u32),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                ident,
            },
        );
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Images `src` as `image` (an incremental or differential with `parent`), with a catalog
/// or, when `catalog` is false, without one. Waits for a new second first so that every
/// point has its own creation second. Returns the seconds between which it ran.
fn create_image(
    src: &Path,
    image: &Path,
    parent: Option<(&str, &Path)>,
    catalog: bool,
    after: u64,
) -> (u64, u64) {
    while now_secs() <= after {
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = now_secs();
    let mut c = strata();
    c.args(["create", "--quiet"]);
    if let Some((flag, p)) = parent {
        c.arg(flag).arg(p);
    }
    c.arg(src).arg(image);
    if catalog {
        c.env_remove("STRATA_NO_CATALOG");
    } else {
        c.env("STRATA_NO_CATALOG", "1");
    }
    ok(c.output().expect("strata runs"));
    (start, now_secs())
}

/// The catalog section of `image`: (file offset, payload length), found as a reader
/// finds it (the trailer's index offset, the index header's `catalog_offset`); None when
/// the image has no catalog.
fn catalog_section(image: &Path) -> Option<(u64, u64)> {
    let b = std::fs::read(image).unwrap();
    let le = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let index = le(b.len() - 64 + 8) as usize;
    let off = le(index + 104);
    if off == 0 {
        return None;
    }
    let o = off as usize;
    assert_eq!(
        &b[o..o + 8],
        b"STRATCAT",
        "{}: no catalog at {off}",
        image.display()
    );
    // Section header: payload length at bytes 16..24, the payload after the 64 bytes.
    let len = le(o + 16);
    assert!(
        len > 0 && off + 64 + len <= index as u64,
        "{}: catalog of {len} bytes at {off}, index at {index}",
        image.display()
    );
    Some((off, len))
}

/// Runs strata with `args`; it must succeed. Returns stdout and stderr.
fn query(args: &[String]) -> (String, String) {
    let o = strata().args(args).output().expect("strata runs");
    let (code, out, err) = outcome(&o);
    assert_eq!(
        code,
        0,
        "strata {}\nstdout: {out}\nstderr: {err}",
        args.join(" ")
    );
    (out, err)
}

/// `args` with `--json` after the command name; its output parsed, and the output
/// without `--json`, which must give one line a row.
fn query_json(args: &[String]) -> (Vec<Value>, String) {
    let mut j = args.to_vec();
    j.insert(1, "--json".into());
    let (out, err) = query(&j);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("strata {}: {e}: {l:?}", j.join(" ")))
        })
        .collect();
    let (text, _) = query(args);
    assert_eq!(
        text.lines().filter(|l| !l.trim().is_empty()).count(),
        rows.len(),
        "strata {}: text rows differ from JSON rows\n{text}\n{out}",
        args.join(" ")
    );
    (rows, err)
}

/// Asserts two row sets are equal, naming what is missing and what is extra.
fn same_rows(what: &str, want: &BTreeSet<String>, got: &BTreeSet<String>) {
    let missing: Vec<_> = want.difference(got).collect();
    let extra: Vec<_> = got.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}\nmissing: {missing:#?}\nextra: {extra:#?}"
    );
}

/// Is `p` at or below `under`?
fn below(p: &str, under: &str) -> bool {
    p == under || p.starts_with(&format!("{under}/"))
}

/// What `diff A B [UNDER]` must report, from the two manifests: `added`/`removed` for a
/// path on one side only, `renamed` for such a pair that is the same file or directory
/// (inode and creation time; what moved along with a renamed directory is compared as if
/// it had stayed), `type` for a kind that changed, `modified` for different contents (of
/// the data, a link's target, or a named stream), else `metadata` for a different mtime or
/// (with `posix`) mode, uid or gid; directories only for the last three.
fn expected_diff<'m>(
    a: &'m Manifest,
    b: &'m Manifest,
    posix: bool,
    under: Option<&str>,
) -> BTreeSet<String> {
    let only_a: Vec<&String> = a.keys().filter(|p| !b.contains_key(*p)).collect();
    let only_b: Vec<&String> = b.keys().filter(|p| !a.contains_key(*p)).collect();
    // (path the row is about, the other path of a rename, row)
    let mut rows: Vec<(&'m str, Option<&'m str>, String)> = Vec::new();
    // The rows of one node seen in both points, at `p` in the second.
    let same_node =
        |p: &'m str, ea: &Ent, eb: &Ent, rows: &mut Vec<(&'m str, Option<&'m str>, String)>| {
            let owner = posix && (ea.mode, ea.uid, ea.gid) != (eb.mode, eb.uid, eb.gid);
            if ea.kind != eb.kind {
                rows.push((p, None, format!("type {p}")));
            } else if ea.kind == Kind::Dir {
                if owner {
                    rows.push((p, None, format!("metadata {p}")));
                }
            } else if ea.content != eb.content {
                rows.push((p, None, format!("modified {p}")));
            } else if owner || ea.mtime != eb.mtime {
                rows.push((p, None, format!("metadata {p}")));
            }
            if ea.kind == Kind::File && eb.kind == Kind::File {
                for (name, sha) in &ea.streams {
                    if eb.streams.get(name).is_some_and(|v| v != sha) {
                        rows.push((p, None, format!("modified {p} stream {name}")));
                    }
                }
            }
        };
    // A file or directory on one side only, the same node on the other: a rename.
    let mut pairs: Vec<(&String, &String)> = Vec::new();
    for &p in &only_a {
        let e = &a[p];
        let Some(id) = e
            .ident
            .as_ref()
            .filter(|_| matches!(e.kind, Kind::File | Kind::Dir))
        else {
            continue;
        };
        let same: Vec<&String> = only_b
            .iter()
            .copied()
            .filter(|q| b[*q].kind == e.kind && b[*q].ident.as_ref() == Some(id))
            .collect();
        assert!(same.len() <= 1, "{p}: several new names {same:?}");
        if let [q] = same[..] {
            pairs.push((p, q));
        }
    }
    let paired: BTreeSet<&String> = pairs.iter().flat_map(|(p, q)| [*p, *q]).collect();
    // Entries that moved with their directory (same name, the directory renamed) are
    // compared as if they had stayed; only the directory is a rename.
    let moved: BTreeMap<&str, &str> = pairs
        .iter()
        .filter(|(p, _)| a[*p].kind == Kind::Dir)
        .map(|(p, q)| (p.as_str(), q.as_str()))
        .collect();
    fn split(x: &str) -> (&str, &str) {
        x.rsplit_once('/').unwrap_or(("", x))
    }
    for &(p, q) in &pairs {
        let ((pd, pn), (qd, qn)) = (split(p), split(q));
        if pn == qn && moved.get(pd) == Some(&qd) {
            same_node(q.as_str(), &a[p], &b[q], &mut rows);
        } else {
            let m = if a[p].kind == Kind::File && a[p].content != b[q].content {
                " modified"
            } else {
                ""
            };
            rows.push((
                q.as_str(),
                Some(p.as_str()),
                format!("renamed {p} -> {q}{m}"),
            ));
        }
    }
    for &p in only_a.iter().filter(|p| !paired.contains(*p)) {
        rows.push((p.as_str(), None, format!("removed {p}")));
    }
    for &p in only_b.iter().filter(|p| !paired.contains(*p)) {
        rows.push((p.as_str(), None, format!("added {p}")));
    }
    for (p, ea) in a {
        if let Some(eb) = b.get(p) {
            same_node(p.as_str(), ea, eb, &mut rows);
        }
    }
    rows.into_iter()
        .filter(|(p, other, row)| match under {
            None => true,
            Some(u) => {
                if let Some(o) = other {
                    assert_eq!(below(p, u), below(o, u), "{row} crosses {u}");
                }
                below(p, u)
            }
        })
        .map(|(_, _, row)| row)
        .collect()
}

/// `diff`'s JSON rows in [`expected_diff`]'s form.
fn diff_rows(rows: &[Value]) -> BTreeSet<String> {
    let set: BTreeSet<String> = rows
        .iter()
        .map(|v| {
            let path = v["path"].as_str().unwrap_or_else(|| panic!("no path: {v}"));
            let change = v["change"]
                .as_str()
                .unwrap_or_else(|| panic!("no change: {v}"));
            match (change, v["stream"].as_str()) {
                ("renamed", _) => {
                    let old = v["old_path"].as_str().unwrap_or_else(|| panic!("{v}"));
                    let m = if v["modified"].as_bool() == Some(true) {
                        " modified"
                    } else {
                        ""
                    };
                    format!("renamed {old} -> {path}{m}")
                }
                (_, Some(stream)) => format!("{change} {path} stream {stream}"),
                _ => format!("{change} {path}"),
            }
        })
        .collect();
    assert_eq!(set.len(), rows.len(), "a row twice: {rows:#?}");
    set
}

/// `diff A B [UNDER]` gives exactly [`expected_diff`]. Returns the expected rows and
/// stderr.
fn check_diff(
    a: &Point,
    b: &Point,
    under: Option<&str>,
    posix: bool,
) -> (BTreeSet<String>, String) {
    let want = expected_diff(&a.manifest, &b.manifest, posix, under);
    let mut args = vec!["diff".to_string(), s(&a.image), s(&b.image)];
    args.extend(under.map(str::to_string));
    let (rows, err) = query_json(&args);
    same_rows(
        &format!("strata {}", args.join(" ")),
        &want,
        &diff_rows(&rows),
    );
    (want, err)
}

/// fnmatch: `*`, `?` and `[...]` (`!` or `^` negates, `a-z` ranges); with `slash`, `*` and
/// `?` also match `/`.
fn glob(p: &[char], t: &[char], slash: bool) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('*', rest)) => (0..=t.len())
            .take_while(|&i| slash || i == 0 || t[i - 1] != '/')
            .any(|i| glob(rest, &t[i..], slash)),
        Some(('?', rest)) => {
            matches!(t.first(), Some(&c) if slash || c != '/') && glob(rest, &t[1..], slash)
        }
        Some(('[', rest)) => match class(rest) {
            Some((ranges, neg, after)) => t.first().is_some_and(|&c| {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != neg
                    && glob(after, &t[1..], slash)
            }),
            None => t.first() == Some(&'[') && glob(rest, &t[1..], slash),
        },
        Some((c, rest)) => t.first() == Some(c) && glob(rest, &t[1..], slash),
    }
}

/// A bracket expression after its `[`: its ranges, whether it is negated and the pattern
/// after its `]`; None when it is not closed.
type Class<'a> = (Vec<(char, char)>, bool, &'a [char]);

fn class(p: &[char]) -> Option<Class<'_>> {
    let neg = matches!(p.first(), Some('!' | '^'));
    let mut i = usize::from(neg);
    let start = i;
    let mut ranges = Vec::new();
    while i < p.len() {
        if p[i] == ']' && i > start {
            return Some((ranges, neg, &p[i + 1..]));
        }
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            ranges.push((p[i], p[i + 2]));
            i += 3;
        } else {
            ranges.push((p[i], p[i]));
            i += 1;
        }
    }
    None
}

/// Does `pattern` select `path` (its name, or the whole path when the pattern has a `/`)?
/// A whole-path pattern must not depend on whether `*` crosses `/`.
fn selects(pattern: &str, path: &str, icase: bool) -> bool {
    let fold = |x: &str| {
        if icase {
            x.to_lowercase()
        } else {
            x.to_string()
        }
    };
    let p: Vec<char> = fold(pattern).chars().collect();
    if pattern.contains('/') {
        let t: Vec<char> = fold(path).chars().collect();
        let (a, b) = (glob(&p, &t, true), glob(&p, &t, false));
        assert_eq!(a, b, "{pattern} on {path}: depends on `*` crossing `/`");
        a
    } else {
        let name = path.rsplit('/').next().unwrap();
        glob(&p, &fold(name).chars().collect::<Vec<_>>(), false)
    }
}

/// A `find` row: image, path, type, and but for directories (whose size strata shows as
/// `ls` does, 0) size and mtime.
fn find_row(image: &str, path: &str, kind: &str, size: u64, mtime: (i64, u32)) -> String {
    if kind == "dir" {
        return format!("{image}\t{path}\t{kind}");
    }
    format!(
        "{image}\t{path}\t{kind}\t{size}\t{}.{:09}",
        mtime.0, mtime.1
    )
}

/// `find OPTS TARGET PATTERN` gives exactly the entries of the `covered` points that the
/// pattern selects and `keep` accepts, each with its image and that image's creation
/// second. Returns the expected rows and stderr.
fn check_find(
    covered: &[&Point],
    target: &Path,
    opts: &[&str],
    pattern: &str,
    keep: &dyn Fn(&Ent) -> bool,
) -> (BTreeSet<String>, String) {
    let icase = opts.contains(&"-i");
    let mut want = BTreeSet::new();
    let mut windows = BTreeMap::new();
    for p in covered {
        let img = canon(&p.image);
        for (path, e) in &p.manifest {
            if selects(pattern, path, icase) && keep(e) {
                want.insert(find_row(&img, path, e.kind.name(), e.size, e.mtime));
            }
        }
        windows.insert(img, p.window);
    }
    assert!(
        !want.is_empty(),
        "find {pattern}: the reference selects nothing"
    );
    let mut args = vec!["find".to_string()];
    args.extend(opts.iter().map(|o| o.to_string()));
    args.extend([s(target), pattern.to_string()]);
    let (rows, err) = query_json(&args);
    let mut got = BTreeSet::new();
    for v in &rows {
        let img = canon(Path::new(
            v["image"].as_str().unwrap_or_else(|| panic!("{v}")),
        ));
        let kind = v["type"].as_str().unwrap_or_else(|| panic!("{v}"));
        let t = (
            v["mtime"].as_i64().unwrap_or_else(|| panic!("{v}")),
            v["mtime_nsec"].as_u64().unwrap_or_else(|| panic!("{v}")) as u32,
        );
        let path = v["path"].as_str().unwrap_or_else(|| panic!("{v}"));
        let size = v["size"].as_u64().unwrap_or_else(|| panic!("{v}"));
        got.insert(find_row(&img, path, kind, size, t));
        let point = v["point"].as_u64().unwrap_or_else(|| panic!("{v}"));
        let (lo, hi) = windows
            .get(&img)
            .unwrap_or_else(|| panic!("{img}: not an image of {}", target.display()));
        assert!(
            (*lo..=*hi).contains(&point),
            "{v}: point {point} not when the image was made ({lo}..={hi})"
        );
    }
    assert_eq!(got.len(), rows.len(), "a row twice: {rows:#?}");
    same_rows(&format!("strata {}", args.join(" ")), &want, &got);
    (want, err)
}

/// What a version of a path is: type, contents and named streams.
type State = (Kind, String, BTreeMap<String, String>);

/// One version of a path over consecutive points.
struct Version {
    /// None for a run of points without the path.
    state: Option<State>,
    size: u64,
    mtimes: Vec<i64>,
    images: Vec<String>,
    /// The path as found in these points (its case may differ from the one asked for).
    paths: Vec<String>,
}

/// The entry `path` names in `m` as `strata ls` resolves it: each name as stored, else,
/// with `fold` (NTFS and FAT, as Windows looks names up), the one name in its directory
/// equal to it ignoring case.
fn resolve<'a>(m: &'a Manifest, path: &str, fold: bool) -> Option<(&'a String, &'a Ent)> {
    if !fold {
        return m.get_key_value(path);
    }
    let mut dir = String::new();
    let mut found = None;
    for name in path.split('/').filter(|c| !c.is_empty()) {
        let kids: Vec<(&String, &Ent, &str)> = m
            .iter()
            .filter_map(|(k, e)| {
                let i = k.rfind('/')?;
                (k[..i] == dir).then(|| (k, e, &k[i + 1..]))
            })
            .collect();
        let hit = match kids.iter().find(|k| k.2 == name) {
            Some(k) => *k,
            None => {
                let folded: Vec<_> = kids
                    .iter()
                    .filter(|k| k.2.to_lowercase() == name.to_lowercase())
                    .collect();
                match folded[..] {
                    [k] => *k,
                    _ => return None,
                }
            }
        };
        dir = hit.0.clone();
        found = Some((hit.0, hit.1));
    }
    found
}

/// A path's versions over `covered` (oldest first): consecutive points with the same type
/// and contents are one version. Points before the path first appears are left out.
fn expected_history(covered: &[&Point], path: &str, fold: bool) -> Vec<Version> {
    let mut out: Vec<Version> = Vec::new();
    for p in covered {
        let found = resolve(&p.manifest, path, fold);
        let state = found.map(|(_, e)| (e.kind, e.content.clone(), e.streams.clone()));
        if out.is_empty() && state.is_none() {
            continue;
        }
        let img = canon(&p.image);
        let at = found.map(|(p, _)| p.clone());
        match out.last_mut() {
            Some(v) if v.state == state => {
                v.images.push(img);
                v.mtimes.extend(found.map(|(_, e)| e.mtime.0));
                v.paths.extend(at);
            }
            _ => out.push(Version {
                state,
                size: found.map_or(0, |(_, e)| e.size),
                mtimes: found.map(|(_, e)| e.mtime.0).into_iter().collect(),
                images: vec![img],
                paths: at.into_iter().collect(),
            }),
        }
    }
    out
}

/// `history TARGET PATH` gives exactly [`expected_history`] (with `fold`, names found
/// ignoring case as on NTFS and FAT); the content identities of
/// two versions are equal if and only if their contents are. Returns the shape of the
/// history (a letter a content, `-` a run without the path) and stderr.
fn check_history(covered: &[&Point], target: &Path, path: &str, fold: bool) -> (String, String) {
    let want = expected_history(covered, path, fold);
    let args = vec!["history".to_string(), s(target), path.to_string()];
    let what = format!("strata {}", args.join(" "));
    let (rows, err) = query_json(&args);
    assert_eq!(rows.len(), want.len(), "{what}: versions\n{rows:#?}");
    let mut ids: Vec<Option<String>> = Vec::new();
    for (v, w) in rows.iter().zip(&want) {
        let at = v["path"].as_str().unwrap_or_else(|| panic!("{what}: {v}"));
        assert!(
            at == path || w.paths.iter().any(|p| p == at),
            "{what}: {v}: path not one of {:?}",
            w.paths
        );
        let images: Vec<String> = v["images"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {v}"))
            .iter()
            .map(|i| canon(Path::new(i.as_str().unwrap())))
            .collect();
        assert_eq!(images, w.images, "{what}: images of {v}");
        match &w.state {
            None => {
                assert_eq!(v["deleted"].as_bool(), Some(true), "{what}: {v}");
                ids.push(None);
            }
            Some((kind, _, _)) => {
                assert_ne!(v["deleted"].as_bool(), Some(true), "{what}: {v}");
                assert_eq!(v["type"].as_str(), Some(kind.name()), "{what}: {v}");
                if *kind == Kind::Dir {
                    ids.push(None);
                    continue;
                }
                assert_eq!(v["size"].as_u64(), Some(w.size), "{what}: {v}");
                let mtime = v["mtime"].as_i64().unwrap_or_else(|| panic!("{what}: {v}"));
                assert!(
                    w.mtimes.contains(&mtime),
                    "{what}: {v}: mtime not one of {:?}",
                    w.mtimes
                );
                let id = v["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: no id: {v}"));
                assert!(
                    !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()),
                    "{what}: {v}"
                );
                ids.push(Some(id.to_string()));
            }
        }
    }
    let mut shape = String::new();
    let mut seen: Vec<&State> = Vec::new();
    for (i, w) in want.iter().enumerate() {
        let Some(st) = &w.state else {
            shape.push('-');
            continue;
        };
        let k = seen.iter().position(|x| *x == st).unwrap_or_else(|| {
            seen.push(st);
            seen.len() - 1
        });
        shape.push((b'a' + k as u8) as char);
        for (j, u) in want.iter().enumerate().take(i) {
            // The identity is the main data's: streams do not enter it.
            if let (Some(a), Some(b), Some(st_j)) = (&ids[i], &ids[j], &u.state) {
                assert_eq!(
                    a == b,
                    (st.0, &st.1) == (st_j.0, &st_j.1),
                    "{what}: identities of versions {j} and {i} ({b}, {a}) disagree with their contents"
                );
            }
        }
    }
    (shape, err)
}

fn no_warning(what: &str, err: &str) {
    assert!(err.trim().is_empty(), "{what}: stderr: {err}");
}

// ---------------------------------------------------------------------------------------
// ext4 through the kernel

/// The file imaged and where its ext4 volume lies in it: the whole file, or (offset,
/// length) of a partition.
struct ExtSrc {
    file: PathBuf,
    part: Option<(u64, u64)>,
}

impl ExtSrc {
    /// A loop device over the volume (detached on drop).
    fn attach(&self, ro: bool) -> Loop {
        let (off, len) = self
            .part
            .map(|(o, l)| (o.to_string(), l.to_string()))
            .unwrap_or_default();
        let mut args = vec!["--find", "--show"];
        if ro {
            args.push("--read-only");
        }
        if self.part.is_some() {
            args.extend(["--offset", &off, "--sizelimit", &len]);
        }
        let f = s(&self.file);
        args.push(&f);
        Loop(sh("losetup", &args))
    }

    /// Byte offset of the volume in the file.
    fn start(&self) -> u64 {
        self.part.map_or(0, |p| p.0)
    }
}

/// Mounts the ext4 volume of `src` (read-only with `ro`), runs `f` on the mount point
/// and unmounts, whatever `f` does.
fn with_ext4<T>(src: &ExtSrc, ro: bool, f: impl FnOnce(&Path) -> T) -> T {
    let mnt = src.file.with_extension("mnt");
    let _ = std::fs::create_dir(&mnt);
    let dev = src.attach(ro);
    let opts = if ro { "ro" } else { "rw" };
    sh("mount", &["-t", "ext4", "-o", opts, &dev.0, &s(&mnt)]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mnt)));
    umount(&mnt);
    drop(dev);
    r.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Unmounts `mnt`. A process another test thread is starting can hold a copy of a
/// descriptor opened here for a moment, so a busy mount is tried again for a while.
fn umount(mnt: &Path) {
    for i in 0.. {
        let o = Command::new("umount").arg(mnt).output().unwrap();
        if o.status.success() {
            return;
        }
        if i == 50 {
            let who = Command::new("fuser").arg("-vm").arg(mnt).output();
            panic!(
                "umount {}: {}{:?}",
                mnt.display(),
                String::from_utf8_lossy(&o.stderr),
                who.map(|w| String::from_utf8_lossy(&w.stderr).into_owned())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fills the blocks of `file` (preallocated: unwritten extents) with noise, as a file
/// deleted earlier leaves them; the kernel still reads zeros there. Returns how many
/// blocks were written.
fn scribble_unwritten(src: &ExtSrc, file: &str) -> usize {
    let dev = src.attach(true);
    let blocks = sh("debugfs", &["-R", &format!("blocks {file}"), &dev.0]);
    let bs = dumpe2fs_block_size(&sh("dumpe2fs", &["-h", &dev.0]));
    drop(dev);
    let blocks: Vec<u64> = blocks
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    for &b in &blocks {
        write_at(&src.file, src.start() + b * bs, &noise(bs as usize, b));
    }
    blocks.len()
}

/// `m` with its paths below `pre` (a partition's `/p1`; empty for a bare volume).
fn prefixed(m: Manifest, pre: &str) -> Manifest {
    if pre.is_empty() {
        return m;
    }
    m.into_iter()
        .map(|(p, e)| {
            let p = if p == "/" {
                pre.to_string()
            } else {
                format!("{pre}{p}")
            };
            (p, e)
        })
        .collect()
}

fn put(r: &Path, rel: &str, data: &[u8]) {
    std::fs::write(r.join(rel), data).unwrap();
}

fn append(r: &Path, rel: &str, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(r.join(rel))
        .unwrap();
    f.write_all(data).unwrap();
}

fn mtime_of(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::open(p).unwrap().set_modified(t).unwrap();
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn set_len(p: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn ext_point0(r: &Path) {
    for d in ["docs", "src", "data", "bin", "links", "many", "archive"] {
        std::fs::create_dir(r.join(d)).unwrap();
    }
    put(r, "docs/readme.txt", &text(3000, 1));
    put(r, "docs/notes.txt", &text(5000, 2));
    put(r, "docs/Guide.TXT", &text(700, 3));
    put(r, "docs/stable.txt", &text(1234, 4));
    put(r, "docs/touched.txt", &text(4500, 5));
    put(r, "docs/owned.txt", &text(100, 6));
    put(r, "docs/recreated.txt", &text(800, 7));
    for (i, n) in ["main.c", "lib.c", "util.h", "old_name.c", "renmod.c"]
        .iter()
        .enumerate()
    {
        put(r, &format!("src/{n}"), &text(600 + 300 * i, 20 + i as u64));
    }
    put(r, "data/big.bin", &noise(300_000, 8));
    put(r, "data/shrink.bin", &noise(200_000, 9));
    put(r, "data/moveme.dat", &noise(10_000, 10));
    put(r, "data/gone.txt", &text(2500, 11));
    put(r, "data/becomes_dir", &text(100, 12));
    // Renamed in point 2 with everything in it.
    std::fs::create_dir_all(r.join("proj/sub")).unwrap();
    put(r, "proj/plan.txt", &text(900, 13));
    put(r, "proj/budget.txt", &text(1200, 14));
    put(r, "proj/sub/deep.txt", &text(300, 15));
    put(r, "data/samesize.bin", &noise(8292, 13));
    put(r, "data/hard.txt", &text(300, 14));
    // Data at the start, then a hole to the end.
    put(r, "data/sparse.img", &text(1000, 15));
    set_len(&r.join("data/sparse.img"), 1 << 20);
    put(r, "data/zeros.img", &text(100, 16));
    set_len(&r.join("data/zeros.img"), 256 << 10);
    put(r, "bin/script.sh", b"#!/bin/sh\necho hello\n");
    set_mode(&r.join("bin/script.sh"), 0o644);
    std::os::unix::fs::symlink("../docs/readme.txt", r.join("links/current")).unwrap();
    std::os::unix::fs::symlink("../docs/stable.txt", r.join("links/stable")).unwrap();
    for i in 0..120 {
        put(
            r,
            &format!("many/f{i:03}.txt"),
            &text(i * 37 + 1, 100 + i as u64),
        );
    }
    put(r, "docs/Résumé été.txt", &text(500, 17));
    put(r, "docs/Case.md", &text(640, 22));
    // Times past 2038 and before 1970, with nanoseconds.
    put(r, "docs/future.txt", &text(90, 23));
    set_mtime(
        &r.join("docs/future.txt"),
        UNIX_EPOCH + Duration::new(4_102_444_800, 123_456_789),
    );
    put(r, "docs/past.txt", &text(80, 24));
    set_mtime(
        &r.join("docs/past.txt"),
        UNIX_EPOCH - Duration::new(315_619_200, 987_654_321),
    );
    put(r, "docs/with \"quotes\" and \\ \t.txt", &text(60, 18));
    // More than 1024 image blocks (4 MiB), and a sparse file whose data crosses 4 MiB.
    put(r, "data/large.bin", &noise(6 << 20, 19));
    put(r, "data/exact.bin", &noise(16384, 20));
    let sparse = r.join("data/sparse_large.img");
    write_at(&sparse, (4 << 20) - 100_000, &noise(300_000, 21));
    set_len(&sparse, 10 << 20);
}

fn ext_point1(r: &Path) {
    write_at(&r.join("docs/readme.txt"), 100, b"EDITED-1");
    append(r, "docs/notes.txt", &text(3000, 30));
    // Contents kept, only the time moves.
    let touched = r.join("docs/touched.txt");
    set_mtime(&touched, mtime_of(&touched) - Duration::from_secs(86_400));
    std::fs::rename(r.join("src/old_name.c"), r.join("src/new_name.c")).unwrap();
    write_at(&r.join("data/big.bin"), 131_072, &noise(4096, 31));
    std::fs::rename(r.join("data/moveme.dat"), r.join("archive/moveme.dat")).unwrap();
    std::fs::remove_file(r.join("data/gone.txt")).unwrap();
    write_at(&r.join("data/sparse.img"), 512 << 10, &text(2000, 32));
    // Zeros written into the hole: the same contents, now allocated.
    write_at(&r.join("data/zeros.img"), 64 << 10, &[0u8; 8192]);
    set_mode(&r.join("bin/script.sh"), 0o755);
    std::fs::hard_link(r.join("data/hard.txt"), r.join("docs/hard-link.txt")).unwrap();
    std::fs::remove_file(r.join("docs/recreated.txt")).unwrap();
    put(r, "docs/recreated.txt", &text(800, 33));
    for i in 0..10 {
        std::fs::remove_file(r.join(format!("many/f{i:03}.txt"))).unwrap();
    }
    append(r, "many/f010.txt", b"more\n");
    put(r, "docs/new.txt", &text(400, 34));
    sh(
        "fallocate",
        &["-l", "256K", &s(&r.join("data/prealloc.bin"))],
    );
    write_at(&r.join("data/large.bin"), (4 << 20) + 5000, b"CHANGED!");
    // The same contents in a new file put in its place: other blocks, holes filled.
    let sparse = r.join("data/sparse_large.img");
    let copy = r.join("data/sparse_large.tmp");
    std::fs::write(&copy, std::fs::read(&sparse).unwrap()).unwrap();
    std::fs::rename(&copy, &sparse).unwrap();
    std::fs::rename(r.join("docs/Case.md"), r.join("docs/case.md")).unwrap();
}

fn ext_point2(r: &Path) {
    write_at(&r.join("docs/readme.txt"), 200, b"EDITED-2");
    set_len(&r.join("data/shrink.bin"), 50_001);
    // Back under the same name with the same contents.
    put(r, "data/gone.txt", &text(2500, 11));
    std::fs::remove_file(r.join("data/becomes_dir")).unwrap();
    std::fs::create_dir(r.join("data/becomes_dir")).unwrap();
    put(r, "data/becomes_dir/child.txt", &text(50, 40));
    // New bytes of the same length, and the old modification time put back.
    let same = r.join("data/samesize.bin");
    let t = mtime_of(&same);
    write_at(&same, 0, &noise(8292, 41));
    set_mtime(&same, t);
    std::fs::remove_file(r.join("links/current")).unwrap();
    std::os::unix::fs::symlink("../docs/notes.txt", r.join("links/current")).unwrap();
    std::fs::rename(r.join("src/renmod.c"), r.join("src/renamed_and_modified.c")).unwrap();
    append(r, "src/renamed_and_modified.c", b"/* appended */\n");
    // The same bytes written again (truncated first): a new time only.
    let touched = r.join("docs/touched.txt");
    let data = std::fs::read(&touched).unwrap();
    std::fs::write(&touched, data).unwrap();
    for i in 20..30 {
        std::fs::remove_file(r.join(format!("many/f{i:03}.txt"))).unwrap();
    }
    put(r, "many/f030.txt", &text(30 * 37 + 1, 42));
    // Zeros written over part of the preallocated extent: the same contents.
    write_at(&r.join("data/prealloc.bin"), 0, &[0u8; 65536]);
    let large = r.join("data/large.bin");
    let copy = r.join("data/large.tmp");
    std::fs::write(&copy, std::fs::read(&large).unwrap()).unwrap();
    std::fs::rename(&copy, &large).unwrap();
    write_at(&r.join("data/exact.bin"), 16376, b"#EDIT#");
    // A directory renamed, then one file in it changed: the rename and the change only.
    std::fs::rename(r.join("proj"), r.join("project")).unwrap();
    append(r, "project/budget.txt", b"one more line\n");
}

fn ext_point3(r: &Path) {
    write_at(&r.join("docs/readme.txt"), 300, b"EDITED-3");
    std::os::unix::fs::chown(r.join("docs/owned.txt"), Some(1000), Some(1000)).unwrap();
    set_mode(&r.join("archive"), 0o700);
    std::os::unix::fs::chown(r.join("src"), None, Some(100)).unwrap();
    std::fs::remove_file(r.join("data/hard.txt")).unwrap();
    std::fs::create_dir(r.join("many/sub")).unwrap();
    std::fs::rename(r.join("many/f100.txt"), r.join("many/sub/f100.txt")).unwrap();
    put(r, "data/late.txt", &text(777, 50));
    // A link made again with the same target: only its time differs.
    std::fs::remove_file(r.join("links/stable")).unwrap();
    std::os::unix::fs::symlink("../docs/stable.txt", r.join("links/stable")).unwrap();
    // A file that becomes a link, and a directory that becomes a file.
    std::fs::remove_file(r.join("docs/new.txt")).unwrap();
    std::os::unix::fs::symlink("readme.txt", r.join("docs/new.txt")).unwrap();
    std::fs::remove_dir_all(r.join("bin")).unwrap();
    put(r, "bin", b"not a directory any more\n");
}

/// The changes that lead to a point, and the image it is made on (`--incremental` or
/// `--differential` and a point's number; None for a full image).
type Step = (fn(&Path), Option<(&'static str, usize)>);

/// An ext4 volume with `block_size` blocks at four points: a full image, two incrementals
/// and a differential of the full one, each after changes made through the kernel. With
/// `partitioned`, the volume is partition 1 of an MBR disk at sector 63, so that its blocks
/// do not fall on the image's 4 KiB blocks and paths start with `/p1`. `diff`, `find` and
/// `history` answer as the kernel's read-only mounts of the volume at those points show it.
fn ext4_points_match_the_kernel(test: &str, block_size: &str, partitioned: bool) {
    if !require_root(test) {
        return;
    }
    let dir = tempdir();
    let vol_len: u64 = 64 << 20;
    let src = if partitioned {
        let file = dir.path().join("disk.img");
        std::fs::File::create(&file)
            .unwrap()
            .set_len(vol_len + (1 << 20))
            .unwrap();
        let mut sfdisk = Command::new("sfdisk")
            .args(["-q", &s(&file)])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk is needed for this test");
        let table = format!("label: dos\nstart=63, size={}, type=83\n", vol_len / 512);
        sfdisk
            .stdin
            .take()
            .unwrap()
            .write_all(table.as_bytes())
            .unwrap();
        assert!(sfdisk.wait().unwrap().success());
        ExtSrc {
            file,
            part: Some((63 * 512, vol_len)),
        }
    } else {
        let file = dir.path().join("vol.ext4");
        std::fs::File::create(&file)
            .unwrap()
            .set_len(vol_len)
            .unwrap();
        ExtSrc { file, part: None }
    };
    {
        let dev = src.attach(false);
        sh(
            "mkfs.ext4",
            &["-q", "-F", "-b", block_size, "-I", "256", &dev.0],
        );
    }
    let pre = if partitioned { "/p1" } else { "" };
    // A row or path of the bare volume, as it is named on this disk.
    let at = |row: &str| row.replace(" /", &format!(" {pre}/"));
    let path = |p: &str| format!("{pre}{p}");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let img = |n: usize| images.join(format!("p{n}.strata"));
    let walk_dir = dir.path().join("walked");
    std::fs::create_dir(&walk_dir).unwrap();
    let walked = |n: usize| walk_dir.join(format!("w{n}.strata"));
    let steps: [Step; 4] = [
        (ext_point0, None),
        (ext_point1, Some(("--incremental", 0))),
        (ext_point2, Some(("--incremental", 1))),
        (ext_point3, Some(("--differential", 0))),
    ];
    let mut points: Vec<Point> = Vec::new();
    for (n, (change, parent)) in steps.into_iter().enumerate() {
        with_ext4(&src, false, change);
        if n == 1 {
            assert!(scribble_unwritten(&src, "/data/prealloc.bin") > 0);
        }
        let parent_img = parent.map(|(flag, k)| (flag, img(k)));
        let after = points.last().map_or(0, |p| p.window.1);
        let window = create_image(
            &src.file,
            &img(n),
            parent_img.as_ref().map(|(f, p)| (*f, p.as_path())),
            true,
            after,
        );
        assert!(catalog_section(&img(n)).is_some(), "p{n}: no catalog");
        // A full image without a catalog of the same point, to be walked.
        create_image(&src.file, &walked(n), None, false, 0);
        assert!(catalog_section(&walked(n)).is_none(), "w{n}: a catalog");
        let manifest = with_ext4(&src, true, |m| manifest_of(m, Reader::Kernel));
        points.push(Point {
            image: img(n),
            manifest: prefixed(manifest, pre),
            window,
        });
    }
    // The kernel reads the preallocated extents as zeros, whatever their blocks hold.
    assert_eq!(
        points[1].manifest[&path("/data/prealloc.bin")].content,
        hex_sha(&[0u8; 256 << 10])
    );
    let p: Vec<&Point> = points.iter().collect();
    let chain2 = [p[0], p[1], p[2]];
    let chain3 = [p[0], p[3]];

    // diff: consecutive points, across two steps, a differential, two chains, and
    // subtrees; each reference holds the changes the steps make.
    let diffs: [(usize, usize, &[&str]); 6] = [
        (
            0,
            1,
            &[
                "modified /docs/readme.txt",
                "modified /docs/notes.txt",
                "metadata /docs/touched.txt",
                "renamed /src/old_name.c -> /src/new_name.c",
                "modified /data/big.bin",
                "renamed /data/moveme.dat -> /archive/moveme.dat",
                "removed /data/gone.txt",
                "modified /data/sparse.img",
                "metadata /data/zeros.img",
                "metadata /bin/script.sh",
                "added /docs/hard-link.txt",
                "modified /docs/recreated.txt",
                "removed /many/f000.txt",
                "modified /many/f010.txt",
                "added /docs/new.txt",
                "added /data/prealloc.bin",
                "modified /data/large.bin",
                "metadata /data/sparse_large.img",
                "renamed /docs/Case.md -> /docs/case.md",
            ],
        ),
        (
            1,
            2,
            &[
                "modified /docs/readme.txt",
                "modified /data/shrink.bin",
                "added /data/gone.txt",
                "type /data/becomes_dir",
                "added /data/becomes_dir/child.txt",
                "modified /data/samesize.bin",
                "modified /links/current",
                "renamed /src/renmod.c -> /src/renamed_and_modified.c modified",
                "metadata /docs/touched.txt",
                "modified /many/f030.txt",
                "metadata /data/prealloc.bin",
                "metadata /data/large.bin",
                "modified /data/exact.bin",
                "renamed /proj -> /project",
                "modified /project/budget.txt",
            ],
        ),
        (
            0,
            2,
            &[
                "metadata /data/gone.txt",
                "renamed /src/old_name.c -> /src/new_name.c",
            ],
        ),
        (
            0,
            3,
            &[
                "metadata /docs/owned.txt",
                "metadata /archive",
                "metadata /src",
                "renamed /many/f100.txt -> /many/sub/f100.txt",
                // The other name of a file with two: from p0 to p3, a rename.
                "renamed /data/hard.txt -> /docs/hard-link.txt",
                "added /data/late.txt",
                "metadata /links/stable",
                "type /bin",
                "removed /bin/script.sh",
            ],
        ),
        (2, 3, &["removed /data/hard.txt", "type /docs/new.txt"]),
        (3, 1, &["type /docs/new.txt", "added /bin/script.sh"]),
    ];
    for (a, b, rows) in diffs {
        let (want, e) = check_diff(p[a], p[b], None, true);
        for row in rows {
            assert!(
                want.contains(&at(row)),
                "p{a} p{b}: the reference lacks {row:?}: {want:#?}"
            );
        }
        no_warning(&format!("diff p{a} p{b}"), &e);
    }
    let (same, e) = check_diff(p[1], p[1], None, true);
    assert!(same.is_empty());
    no_warning("diff p1 p1", &e);
    let (sub, e) = check_diff(p[0], p[2], Some(&path("/src")), true);
    assert_eq!(sub.len(), 2, "{sub:#?}");
    no_warning("diff p0 p2 /src", &e);
    let (sub, e) = check_diff(p[0], p[3], Some(&path("/many")), true);
    assert!(
        sub.contains(&at("renamed /many/f100.txt -> /many/sub/f100.txt")) && sub.len() > 20,
        "{sub:#?}"
    );
    no_warning("diff p0 p3 /many", &e);
    let (one, e) = check_diff(p[1], p[2], Some(&path("/data/samesize.bin")), true);
    assert_eq!(one.len(), 1, "{one:#?}");
    no_warning("diff p1 p2 /data/samesize.bin", &e);

    // find: a directory of images, one chain, case, whole paths, types and sizes.
    let any = |_: &Ent| true;
    let (all_txt, e) = check_find(&p, &images, &[], "*.txt", &any);
    no_warning("find *.txt", &e);
    assert!(!all_txt.iter().any(|r| r.contains("Guide.TXT")));
    let (_, e) = check_find(&chain2, &img(2), &[], "*.txt", &any);
    no_warning("find p2 *.txt", &e);
    let (folded, e) = check_find(&p, &images, &["-i"], "*.TXT", &any);
    assert!(folded
        .iter()
        .any(|r| r.contains(&format!("{pre}/docs/Guide.TXT\t"))));
    assert_eq!(folded.len(), all_txt.len() + 4);
    no_warning("find -i *.TXT", &e);
    let (_, e) = check_find(&p, &images, &["-i"], "READ*", &any);
    no_warning("find -i READ*", &e);
    let (quoted, e) = check_find(&p, &images, &[], "*\"quotes\"*", &any);
    assert_eq!(quoted.len(), 4, "{quoted:#?}");
    no_warning("find *\"quotes\"*", &e);
    let (docs, e) = check_find(&p, &images, &[], &path("/docs/*.txt"), &any);
    assert!(docs.iter().all(|r| r.contains(&format!("\t{pre}/docs/"))));
    no_warning("find /docs/*.txt", &e);
    let (_, e) = check_find(&chain3, &img(3), &[], &path("/many/*/f1??.txt"), &any);
    no_warning("find p3 /many/*/f1??.txt", &e);
    let (dirs, e) = check_find(&p, &images, &["--type", "d"], "*[ai]*", &|e| {
        e.kind == Kind::Dir
    });
    assert!(dirs
        .iter()
        .any(|r| r.ends_with(&format!("\t{pre}/data/becomes_dir\tdir"))));
    assert!(!dirs.iter().any(|r| r.contains(&format!("\t{pre}/docs\t"))));
    no_warning("find --type d", &e);
    let (links, e) = check_find(&p, &images, &["--type", "l"], "*", &|e| {
        e.kind == Kind::Link
    });
    assert_eq!(links.len(), 9, "{links:#?}");
    no_warning("find --type l", &e);
    let (lo, hi) = (3800, 4200);
    for pt in &p {
        for (path, e) in &pt.manifest {
            assert!(e.size != lo && e.size != hi, "{path}: size on a bound");
        }
    }
    let (sized, e) = check_find(
        &p,
        &images,
        &["--type", "f", "--min-size", "3800", "--max-size", "4200"],
        "f1[0-4]?.txt",
        &|e| e.kind == Kind::File && (lo..=hi).contains(&e.size),
    );
    assert!(sized.len() > 20, "{sized:#?}");
    no_warning("find --min-size --max-size", &e);
    let (negated, e) = check_find(&chain2, &img(2), &[], "f0[!0-4]?.txt", &any);
    assert!(!negated.iter().any(|r| r.contains("/many/f00")));
    no_warning("find [!0-4]", &e);

    // Walking images without a catalog gives the rows and content identities the
    // catalogs give, with one note a run.
    let answer = |args: &[String]| -> (Vec<Value>, String) {
        let (out, err) = query(args);
        let mut rows: Vec<Value> = out
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                for k in ["image", "images", "point", "points"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect();
        rows.sort_by_key(|v| v.to_string());
        (rows, err)
    };
    let pairs: [(&[String], &[String]); 6] = [
        (
            &["diff".into(), "--json".into(), s(&img(0)), s(&img(1))],
            &["diff".into(), "--json".into(), s(&walked(0)), s(&walked(1))],
        ),
        (
            &["diff".into(), "--json".into(), s(&img(1)), s(&img(2))],
            &["diff".into(), "--json".into(), s(&walked(1)), s(&walked(2))],
        ),
        (
            &["diff".into(), "--json".into(), s(&img(3)), s(&img(0))],
            &["diff".into(), "--json".into(), s(&walked(3)), s(&walked(0))],
        ),
        (
            &["find".into(), "--json".into(), s(&images), "*".into()],
            &["find".into(), "--json".into(), s(&walk_dir), "*".into()],
        ),
        (
            &[
                "history".into(),
                "--json".into(),
                s(&images),
                path("/data/large.bin"),
            ],
            &[
                "history".into(),
                "--json".into(),
                s(&walk_dir),
                path("/data/large.bin"),
            ],
        ),
        (
            &[
                "history".into(),
                "--json".into(),
                s(&images),
                path("/data/prealloc.bin"),
            ],
            &[
                "history".into(),
                "--json".into(),
                s(&walk_dir),
                path("/data/prealloc.bin"),
            ],
        ),
    ];
    for (cataloged, walking) in pairs {
        let (want, e) = answer(cataloged);
        no_warning(&cataloged.join(" "), &e);
        let (got, e) = answer(walking);
        assert!(!want.is_empty());
        assert_eq!(
            got,
            want,
            "{}: walked and cataloged differ",
            walking.join(" ")
        );
        let notes = e.lines().filter(|l| l.contains("catalog")).count();
        assert_eq!(notes, 1, "{}: {e}", walking.join(" "));
    }

    // history: a chain, a directory (the differential last), and a differential's chain.
    for (covered, target, name, shape) in [
        (&chain2[..], img(2), "/docs/readme.txt", "abc"),
        (&p[..], images.clone(), "/docs/readme.txt", "abcd"),
        (&chain3[..], img(3), "/docs/readme.txt", "ab"),
        (&chain2[..], img(2), "/data/gone.txt", "a-a"),
        (&p[..], images.clone(), "/data/gone.txt", "a-a"),
        (&p[..], images.clone(), "/docs/stable.txt", "a"),
        (&p[..], images.clone(), "/docs/touched.txt", "a"),
        (&p[..], images.clone(), "/data/zeros.img", "a"),
        (&chain2[..], img(2), "/data/samesize.bin", "ab"),
        (&chain2[..], img(2), "/data/becomes_dir", "ab"),
        (&p[..], images.clone(), "/links/current", "ab"),
        (&p[..], images.clone(), "/links/stable", "a"),
        (&p[..], images.clone(), "/data/hard.txt", "a-"),
        (&p[..], images.clone(), "/docs", "a"),
        (&p[..], images.clone(), "/bin", "ab"),
        (&chain2[..], img(2), "/data/large.bin", "ab"),
        (&p[..], images.clone(), "/data/sparse_large.img", "a"),
        (&p[..], images.clone(), "/data/exact.bin", "ab"),
        (&p[..], images.clone(), "/docs/hard-link.txt", "a"),
        (&p[..], images.clone(), "/docs/Résumé été.txt", "a"),
        (
            &p[..],
            images.clone(),
            "/docs/with \"quotes\" and \\ \t.txt",
            "a",
        ),
    ] {
        let (got, e) = check_history(covered, &target, &path(name), false);
        assert_eq!(got, shape, "{name}: the reference's versions");
        no_warning(&format!("history {name}"), &e);
    }

    // Names and case. ext4 names are case-sensitive: after a rename that changes only
    // case the old name is gone, as `ls` says; `-i` folds non-ASCII letters too.
    let (got, e) = check_history(&p, &images, &path("/docs/Case.md"), false);
    assert_eq!(got, "a-", "/docs/Case.md: the reference's versions");
    no_warning("history /docs/Case.md", &e);
    let (accents, e) = check_find(&p, &images, &["-i"], "*SUMÉ ÉTÉ*", &any);
    assert_eq!(accents.len(), 4, "{accents:#?}");
    no_warning("find -i *SUMÉ ÉTÉ*", &e);
}

#[test]
fn ext4_4k_blocks_diff_find_history_match_the_kernel() {
    ext4_points_match_the_kernel(
        "ext4_4k_blocks_diff_find_history_match_the_kernel",
        "4096",
        false,
    );
}

/// 1 KiB blocks: a file's blocks need not fill the image's 4 KiB blocks.
#[test]
fn ext4_1k_blocks_diff_find_history_match_the_kernel() {
    ext4_points_match_the_kernel(
        "ext4_1k_blocks_diff_find_history_match_the_kernel",
        "1024",
        false,
    );
}

/// A partition at sector 63: no file block lies on an image block.
#[test]
fn ext4_partition_at_sector_63_diff_find_history_match_the_kernel() {
    ext4_points_match_the_kernel(
        "ext4_partition_at_sector_63_diff_find_history_match_the_kernel",
        "4096",
        true,
    );
}

// ---------------------------------------------------------------------------------------
// NTFS through ntfs-3g

/// Mounts the NTFS volume file `vol` read-only with ntfs-3g, runs `f` on the mount point
/// and unmounts, whatever `f` does.
fn with_ntfs3g_ro<T>(vol: &Path, f: impl FnOnce(&Path) -> T) -> T {
    let mnt = vol.with_extension("ro-mnt");
    let _ = std::fs::create_dir(&mnt);
    sh("ntfs-3g", &["-o", "ro", &s(vol), &s(&mnt)]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mnt)));
    umount(&mnt);
    r.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// The first point; named streams are ntfs-3g's `user.*` attributes. `report.txt` and
/// `Report.txt` differ only in case.
const NTFS_P0: &str = r#"
import os
def put(p, d):
    with open(p, 'wb') as f:
        f.write(d)
os.mkdir('sub')
put('edit.txt', b'original line\n' * 200)
put('append.log', b'log line\n' * 20)
put('rename_me.txt', b'to be renamed\n' * 300)
put('delete_me.txt', b'to be deleted\n' * 40)
put('streamed.txt', b'main data stays\n' * 50)
os.setxattr('streamed.txt', 'user.meta', b'stream version one\n' * 20)
os.setxattr('streamed.txt', 'user.fixed', b'unchanged stream\n' * 5)
put('Report.txt', b'Capital report\n' * 10)
put('report.txt', b'lower report\n' * 10)
put('unchanged.txt', b'never changes\n')
put('sub/inner.txt', b'inner\n' * 500)
for i in range(30):
    put('sub/n%02d.txt' % i, b'%d\n' % i * (i + 1))
put('casey.txt', b'renamed to capitals\n' * 10)
os.mkdir('Pair')
put('Pair/x.txt', b'lower x\n')
put('Pair/X.txt', b'upper X\n')
put('linked.txt', b'one file, two names\n' * 7)
os.link('linked.txt', 'linked2.txt')
os.mkdir('comp')
os.setxattr('comp', 'system.ntfs_attrib_be', (0x800).to_bytes(4, 'big'))
put('comp/text.txt', b''.join(b'line %d of a compressible file\n' % i for i in range(4000)))
put('comp/edit.txt', b''.join(b'edit line %d\n' % i for i in range(4000)))
with open('sparse.bin', 'wb') as f:
    f.truncate(1 << 20); f.seek(300000); f.write(b'island\n' * 1000)
"#;

/// The second point: an edit in place, an append that leaves the MFT record, a rename to
/// another directory, a deletion, a stream rewritten with the file's time put back, one of
/// the two names differing in case edited, a new file, a rename that changes only case,
/// a compressed file written again with the same contents and one edited, zeros written
/// into a sparse file's hole.
const NTFS_P1: &str = r#"
import os
with open('edit.txt', 'r+b') as f:
    f.seek(100); f.write(b'EDITED')
with open('append.log', 'ab') as f:
    f.write(b'appended line\n' * 1000)
os.rename('rename_me.txt', 'sub/renamed.txt')
os.remove('delete_me.txt')
st = os.stat('streamed.txt')
os.setxattr('streamed.txt', 'user.meta', b'stream version two\n' * 20)
os.utime('streamed.txt', ns=(st.st_atime_ns, st.st_mtime_ns))
with open('report.txt', 'r+b') as f:
    f.write(b'LOWER')
with open('new.txt', 'wb') as f:
    f.write(b'made at the second point\n')
os.rename('casey.txt', 'CASEY.txt')
os.rename('linked2.txt', 'sub/linked3.txt')
data = open('comp/text.txt', 'rb').read()
with open('comp/text.txt', 'wb') as f:
    f.write(data)
with open('comp/edit.txt', 'r+b') as f:
    f.seek(50000); f.write(b'EDITED')
with open('sparse.bin', 'r+b') as f:
    f.seek(700000); f.write(bytes(20000))
"#;

/// A bare NTFS volume at two points, changed through ntfs-3g: `diff`, `find` and
/// `history` answer as ntfs-3g's read-only mounts show it; a rewritten named stream is a
/// change of that stream, not of the file's data.
#[test]
fn ntfs_diff_find_history_match_ntfs3g() {
    if !require_root("ntfs_diff_find_history_match_ntfs3g") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let img = |n: usize| images.join(format!("n{n}.strata"));
    let mut points: Vec<Point> = Vec::new();
    for (n, script) in [NTFS_P0, NTFS_P1].into_iter().enumerate() {
        ntfs3g_fill(&vol, script);
        let parent = (n > 0).then(|| img(n - 1));
        let after = points.last().map_or(0, |p| p.window.1);
        let window = create_image(
            &vol,
            &img(n),
            parent.as_deref().map(|p| ("--incremental", p)),
            true,
            after,
        );
        assert!(catalog_section(&img(n)).is_some(), "n{n}: no catalog");
        let manifest = with_ntfs3g_ro(&vol, |m| manifest_of(m, Reader::Ntfs3g));
        points.push(Point {
            image: img(n),
            manifest,
            window,
        });
    }
    let p: Vec<&Point> = points.iter().collect();
    let (d, e) = check_diff(p[0], p[1], None, false);
    no_warning("diff n0 n1", &e);
    for row in [
        "modified /edit.txt",
        "modified /append.log",
        "renamed /rename_me.txt -> /sub/renamed.txt",
        "removed /delete_me.txt",
        "modified /streamed.txt stream meta",
        "modified /report.txt",
        "added /new.txt",
        "renamed /casey.txt -> /CASEY.txt",
        "renamed /linked2.txt -> /sub/linked3.txt",
        "metadata /comp/text.txt",
        "modified /comp/edit.txt",
        "metadata /sparse.bin",
    ] {
        assert!(d.contains(row), "the reference lacks {row:?}: {d:#?}");
    }
    for row in [
        "modified /streamed.txt",
        "metadata /streamed.txt",
        "modified /Report.txt",
    ] {
        assert!(!d.contains(row), "the reference has {row:?}: {d:#?}");
    }
    let (_, e) = check_diff(p[1], p[0], None, false);
    no_warning("diff n1 n0", &e);

    let any = |_: &Ent| true;
    let (both, e) = check_find(&p, &images, &["-i"], "*REPORT*", &any);
    assert_eq!(both.len(), 4, "{both:#?}");
    no_warning("find -i *REPORT*", &e);
    let (lower, e) = check_find(&p, &img(1), &[], "report.txt", &any);
    assert_eq!(lower.len(), 2, "{lower:#?}");
    no_warning("find report.txt", &e);
    let (_, e) = check_find(&p, &images, &[], "*.txt", &any);
    no_warning("find *.txt", &e);
    let (_, e) = check_find(&p, &images, &[], "/sub/n[0-1]?.txt", &any);
    no_warning("find /sub/n[0-1]?.txt", &e);

    for (path, shape) in [
        ("/report.txt", "ab"),
        ("/Report.txt", "a"),
        ("/edit.txt", "ab"),
        ("/append.log", "ab"),
        ("/delete_me.txt", "a-"),
        ("/unchanged.txt", "a"),
        // Found ignoring case, as `ls` finds it, in the second point too.
        ("/casey.txt", "a"),
        ("/streamed.txt", "ab"),
        ("/linked.txt", "a"),
        ("/comp/text.txt", "a"),
        ("/sparse.bin", "a"),
    ] {
        let (got, e) = check_history(&p, &img(1), path, true);
        assert_eq!(got, shape, "{path}: the reference's versions");
        no_warning(&format!("history {path}"), &e);
    }
    // Each name looked up on its own, as `ls` does: `pair` is `Pair` (the only such
    // name), and `x.txt` is there as stored (next to `X.txt`).
    let (got, e) = check_history(&p, &img(1), "/pair/x.txt", true);
    assert_eq!(got, "a", "/pair/x.txt: the reference's versions");
    no_warning("history /pair/x.txt", &e);
}

// ---------------------------------------------------------------------------------------
// FAT through mtools

/// Runs an mtools command (`MTOOLS_SKIP_CHECK=1`, `TZ=UTC`); it must succeed.
fn mtools(args: &[&str]) {
    let o = Command::new(args[0])
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("mtools is needed for this test: {e}"));
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Seconds of the first point's file times (even: FAT keeps two-second times).
const T0: u64 = 1_600_000_000;

/// Writes `data` to the host file `host/name` with modification time `T0 + dt`.
fn host_file(host: &Path, name: &str, data: &[u8], dt: u64) -> String {
    let p = host.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    set_mtime(&p, UNIX_EPOCH + Duration::from_secs(T0 + dt));
    s(&p)
}

/// Copies the host file `name` (made with [`host_file`]) onto the volume as `to`, keeping
/// its time.
fn fat_put(vol: &str, host: &Path, name: &str, data: &[u8], dt: u64, to: &str) {
    let f = host_file(host, name, data, dt);
    mtools(&["mcopy", "-i", vol, "-o", "-m", &f, &format!("::{to}")]);
}

/// A bare FAT volume at three points changed by mtools (a full image and two incrementals,
/// each with a catalog where `catalogs` says so), with what mtools copies out of the
/// volume at each point. Returns the image directory and the points.
fn fat_points(dir: &Path, catalogs: [bool; 3]) -> (PathBuf, Vec<Point>) {
    let vol = dir.join("vol.fat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    sh("mkfs.fat", &["-F", "16", &s(&vol)]);
    let v = s(&vol);
    let host = dir.join("host");
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    let mut points: Vec<Point> = Vec::new();
    for (n, catalog) in catalogs.into_iter().enumerate() {
        let h = host.join(format!("p{n}"));
        match n {
            0 => {
                let tree = h.join("tree");
                host_file(&tree, "readme.txt", &text(900, 1), 0);
                host_file(&tree, "keep.txt", &text(3000, 2), 2);
                host_file(&tree, "edit.txt", &text(5000, 3), 4);
                host_file(&tree, "append.txt", &text(1500, 4), 6);
                host_file(&tree, "touch.txt", &text(2200, 5), 8);
                host_file(&tree, "old.txt", &text(700, 6), 10);
                host_file(&tree, "gone.txt", &text(1100, 7), 12);
                host_file(&tree, "MIXED.Txt", &text(300, 8), 14);
                host_file(&tree, "Sub/inner.txt", &text(4000, 9), 16);
                host_file(&tree, "Sub/deep/data.bin", &noise(20_000, 10), 18);
                let mut args = vec!["mcopy".to_string(), "-i".into(), v.clone()];
                args.extend(["-s".into(), "-m".into()]);
                for e in std::fs::read_dir(&tree).unwrap() {
                    args.push(s(&e.unwrap().path()));
                }
                args.push("::/".into());
                mtools(&args.iter().map(String::as_str).collect::<Vec<_>>());
            }
            1 => {
                mtools(&["mdel", "-i", &v, "::/gone.txt"]);
                mtools(&["mren", "-i", &v, "::/old.txt", "::/renamed.txt"]);
                // New contents of the same size and the same time.
                fat_put(&v, &h, "edit.txt", &text(5000, 30), 4, "/edit.txt");
                let mut longer = text(1500, 4);
                longer.extend(text(900, 31));
                fat_put(&v, &h, "append.txt", &longer, 100, "/append.txt");
                // The same contents with a new time.
                fat_put(&v, &h, "touch.txt", &text(2200, 5), 200, "/touch.txt");
                mtools(&["mmd", "-i", &v, "::/NewDir"]);
                fat_put(&v, &h, "new.txt", &text(600, 32), 300, "/NewDir/new.txt");
                let mut data = noise(20_000, 10);
                data[8192..12288].copy_from_slice(&noise(4096, 33));
                fat_put(&v, &h, "data.bin", &data, 400, "/Sub/deep/data.bin");
            }
            _ => {
                let mut more = text(5000, 30);
                more.extend(text(100, 40));
                fat_put(&v, &h, "edit.txt", &more, 500, "/edit.txt");
                mtools(&["mdel", "-i", &v, "::/Sub/inner.txt"]);
                fat_put(&v, &h, "late.txt", &text(800, 41), 600, "/late.txt");
            }
        }
        // The volume as it is at this point, kept for the reference and for more images.
        let copy = dir.join(format!("vol-p{n}.fat"));
        std::fs::copy(&vol, &copy).unwrap();
        let image = images.join(format!("f{n}.strata"));
        let parent = (n > 0).then(|| images.join(format!("f{}.strata", n - 1)));
        let after = points.last().map_or(0, |p| p.window.1);
        let window = create_image(
            &vol,
            &image,
            parent.as_deref().map(|p| ("--incremental", p)),
            catalog,
            after,
        );
        assert_eq!(
            catalog_section(&image).is_some(),
            catalog,
            "f{n}: catalog present"
        );
        let out = dir.join(format!("mtools-p{n}"));
        std::fs::create_dir(&out).unwrap();
        mtools(&[
            "mcopy",
            "-i",
            &s(&copy),
            "-s",
            "-m",
            "-n",
            "-p",
            "-Q",
            "::/",
            &s(&out),
        ]);
        points.push(Point {
            image,
            manifest: manifest_of(&out, Reader::Mtools),
            window,
        });
    }
    (images, points)
}

/// One query of [`fat_queries`]: what it is, which points it reads, its stdout (sorted
/// lines) and stderr.
struct Answer {
    what: String,
    reads: Vec<usize>,
    lines: Vec<String>,
    err: String,
}

/// `diff`, `find` and `history` over the FAT points, each checked against the mtools
/// reference.
fn fat_queries(images: &Path, points: &[Point]) -> Vec<Answer> {
    let p: Vec<&Point> = points.iter().collect();
    let any = |_: &Ent| true;
    let mut out = Vec::new();
    let mut record = |what: String, reads: Vec<usize>, args: Vec<String>, err: String| {
        let mut j = args;
        j.insert(1, "--json".into());
        let (stdout, _) = query(&j);
        let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
        lines.sort();
        out.push(Answer {
            what,
            reads,
            lines,
            err,
        });
    };
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        let (want, err) = check_diff(p[a], p[b], None, false);
        if (a, b) == (0, 1) {
            for row in [
                "removed /gone.txt",
                "removed /old.txt",
                "added /renamed.txt",
                "modified /edit.txt",
                "modified /append.txt",
                "metadata /touch.txt",
                "added /NewDir",
                "added /NewDir/new.txt",
                "modified /Sub/deep/data.bin",
            ] {
                assert!(want.contains(row), "the reference lacks {row:?}: {want:#?}");
            }
            assert_eq!(want.len(), 9, "{want:#?}");
        }
        let args = vec!["diff".into(), s(&p[a].image), s(&p[b].image)];
        record(format!("diff f{a} f{b}"), vec![a, b], args, err);
    }
    let (sub, err) = check_diff(p[0], p[2], Some("/Sub"), false);
    assert_eq!(sub.len(), 2, "{sub:#?}");
    let args = vec!["diff".into(), s(&p[0].image), s(&p[2].image), "/Sub".into()];
    record("diff f0 f2 /Sub".into(), vec![0, 2], args, err);

    let finds: [(PathBuf, &[&str], &str); 4] = [
        (images.to_path_buf(), &[], "*.txt"),
        (images.to_path_buf(), &["-i"], "*.TXT"),
        (p[2].image.clone(), &[], "/Sub/*.txt"),
        (p[2].image.clone(), &["-i"], "mixed.txt"),
    ];
    for (target, opts, pattern) in finds {
        let (want, err) = check_find(&p, &target, opts, pattern, &any);
        if opts.is_empty() && pattern == "*.txt" {
            assert!(!want.iter().any(|r| r.contains("MIXED")), "{want:#?}");
        }
        let mut args = vec!["find".to_string()];
        args.extend(opts.iter().map(|o| o.to_string()));
        args.extend([s(&target), pattern.to_string()]);
        record(format!("find {opts:?} {pattern}"), vec![0, 1, 2], args, err);
    }
    for (path, shape) in [
        ("/edit.txt", "abc"),
        ("/touch.txt", "a"),
        ("/gone.txt", "a-"),
        ("/Sub/inner.txt", "a-"),
        ("/keep.txt", "a"),
    ] {
        let (got, err) = check_history(&p, &p[2].image, path, true);
        assert_eq!(got, shape, "{path}: the reference's versions");
        let args = vec!["history".into(), s(&p[2].image), path.to_string()];
        record(format!("history {path}"), vec![0, 1, 2], args, err);
    }
    out
}

/// A bare FAT volume at three points changed by mtools: `diff`, `find` and `history`
/// answer as mtools shows the volume (FAT has no inode numbers: a rename is a removal and
/// an addition), also after `consolidate`.
#[test]
fn fat_diff_find_history_match_mtools() {
    let dir = tempdir();
    let (images, mut points) = fat_points(dir.path(), [true; 3]);
    for a in fat_queries(&images, &points) {
        no_warning(&a.what, &a.err);
    }

    // Consolidated images hold the catalog of the point they keep: a synthetic full image
    // of the middle point, then that point merged into its parent in place.
    let full = dir.path().join("full1.strata");
    ok(run(&[
        &"consolidate",
        &"-q",
        &"--full",
        &full,
        &points[1].image,
    ]));
    assert!(
        catalog_section(&full).is_some(),
        "no catalog in the full image"
    );
    let full_point = Point {
        image: full,
        manifest: points[1].manifest.clone(),
        window: points[1].window,
    };
    for (a, b) in [(&points[0], &full_point), (&full_point, &points[2])] {
        let (_, e) = check_diff(a, b, None, false);
        no_warning("diff with a consolidated image", &e);
    }
    ok(run(&[&"consolidate", &"-q", &points[1].image]));
    assert!(!points[0].image.exists(), "the parent is still there");
    assert!(
        catalog_section(&points[1].image).is_some(),
        "no catalog after merging"
    );
    points.remove(0);
    let p: Vec<&Point> = points.iter().collect();
    let (_, e) = check_find(&p, &p[1].image, &[], "*.txt", &|_| true);
    no_warning("find after merging", &e);
    let (_, e) = check_find(&p, &images, &["-i"], "*.TXT", &|_| true);
    no_warning("find -i DIR after merging", &e);
    for (path, shape) in [("/edit.txt", "ab"), ("/Sub/inner.txt", "a-")] {
        let (got, e) = check_history(&p, &p[1].image, path, true);
        assert_eq!(got, shape, "{path}: the reference's versions");
        no_warning(&format!("history {path} after merging"), &e);
    }
    let (_, e) = check_diff(p[0], p[1], None, false);
    no_warning("diff after merging", &e);
}

/// Flips one byte of `image` at `at`.
fn flip(image: &Path, at: u64) {
    let mut b = std::fs::read(image).unwrap();
    b[at as usize] ^= 0x5a;
    std::fs::write(image, b).unwrap();
}

/// A byte flipped in the middle of one image's catalog, then the signature of another
/// image's catalog damaged: every answer stays what it was (and what mtools shows), and
/// each query that reads a damaged catalog says so on stderr.
#[test]
fn damaged_catalogs_give_the_same_answers() {
    let dir = tempdir();
    let (images, points) = fat_points(dir.path(), [true; 3]);
    let before = fat_queries(&images, &points);
    for a in &before {
        no_warning(&a.what, &a.err);
    }
    let (off, len) = catalog_section(&points[1].image).unwrap();
    flip(&points[1].image, off + 64 + len / 2);
    let (off0, _) = catalog_section(&points[0].image).unwrap();
    for (damaged, after) in [(vec![1], None), (vec![0, 1], Some(off0))] {
        if let Some(at) = after {
            flip(&points[0].image, at + 3);
        }
        let now = fat_queries(&images, &points);
        for (b, a) in before.iter().zip(&now) {
            assert_eq!(b.lines, a.lines, "{}: answers changed", a.what);
            if a.reads.iter().any(|r| damaged.contains(r)) {
                assert!(
                    a.err.to_lowercase().contains("catalog"),
                    "{}: no word of the damaged catalog: {:?}",
                    a.what,
                    a.err
                );
            }
        }
    }
}

/// Images made with `STRATA_NO_CATALOG=1` have none; `find`, `diff` and `history` walk
/// their filesystems instead, give the answers mtools shows, say so once a run, and give
/// the content identities that catalogs of the same volumes hold.
#[test]
fn images_without_a_catalog_are_walked() {
    let dir = tempdir();
    let (images, points) = fat_points(dir.path(), [false, false, true]);
    for a in fat_queries(&images, &points) {
        let notes = a
            .err
            .lines()
            .filter(|l| l.to_lowercase().contains("catalog"))
            .count();
        assert_eq!(notes, 1, "{}: one note on stderr: {:?}", a.what, a.err);
    }
    // Full images with catalogs of the same three volumes.
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    let mut after = points[2].window.1;
    for n in 0..3 {
        let img = full.join(format!("c{n}.strata"));
        let vol = dir.path().join(format!("vol-p{n}.fat"));
        after = create_image(&vol, &img, None, true, after).1;
        assert!(catalog_section(&img).is_some());
    }
    for path in ["/edit.txt", "/touch.txt", "/Sub/deep/data.bin"] {
        let ids = |target: &Path| -> Vec<Value> {
            let args = [
                "history".into(),
                "--json".into(),
                s(target),
                path.to_string(),
            ];
            let (out, _) = query(&args);
            out.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].clone())
                .collect()
        };
        let (walked, cataloged) = (ids(&points[2].image), ids(&full));
        assert!(!walked.is_empty() && walked.iter().all(Value::is_string));
        assert_eq!(walked, cataloged, "{path}: content identities");
    }
}

// ---------------------------------------------------------------------------------------
// Incremental catalogs built from the parent's

/// Files before the first point: 40 directories of 40 files, and `keep/` whose files no
/// change touches through the filesystem.
const FROM_PARENT_P0: &str = r#"
import os
for d in range(40):
    os.makedirs('d%02d' % d)
    for f in range(40):
        with open('d%02d/f%02d.txt' % (d, f), 'wb') as o:
            o.write(('%d/%d ' % (d, f)).encode() * (40 + 5 * f))
os.mkdir('keep')
for k in range(3):
    with open('keep/k%d.bin' % k, 'wb') as o:
        o.write(bytes((i * 7 + k) % 251 for i in range(96 << 10)))
"#;

/// One day's changes: edits in place, an append, a change that keeps size and mtime, a
/// rename across directories, a delete, a hard link, a directory's mode, a new directory.
const FROM_PARENT_P1: &str = r#"
import os
def edit(p, at, data):
    with open(p, 'r+b') as o:
        o.seek(at)
        o.write(data)
edit('d01/f03.txt', 10, b'EDITED')
edit('d05/f20.txt', 500, b'CHANGED IN PLACE')
with open('d07/f07.txt', 'ab') as o:
    o.write(b'appended\n' * 100)
st = os.stat('d02/f02.txt')
edit('d02/f02.txt', 0, b'X')
os.utime('d02/f02.txt', ns=(st.st_atime_ns, st.st_mtime_ns))
os.rename('d03/f04.txt', 'd09/moved.txt')
os.remove('d04/f05.txt')
os.link('d06/f06.txt', 'd08/link.txt')
os.chmod('d10', 0o700)
os.mkdir('new')
for f in range(5):
    with open('new/n%d.txt' % f, 'wb') as o:
        o.write(b'new file %d\n' % f * 30)
"#;

/// `create --json` of `src` into `image` on `parent`: (entries, entries read).
fn create_counted(src: &Path, image: &Path, parent: Option<&Path>) -> (u64, u64) {
    let mut c = strata();
    c.args(["create", "--quiet", "--json"]);
    if let Some(p) = parent {
        c.arg("--incremental").arg(p);
    }
    c.env_remove("STRATA_NO_CATALOG").arg(src).arg(image);
    let out: Value = serde_json::from_str(&ok(c.output().unwrap())).unwrap();
    let n = |k: &str| out[k].as_u64().unwrap_or_else(|| panic!("no {k} in {out}"));
    (n("catalog_entries"), n("catalog_entries_read"))
}

/// `strata diff --json a b`, as a set of rows.
fn diff_set(a: &Path, b: &Path) -> BTreeSet<String> {
    let (rows, err) = query_json(&["diff".into(), s(a), s(b)]);
    no_warning("diff", &err);
    rows.iter().map(Value::to_string).collect()
}

/// A point's catalog taken from its parent's must be the one a walk gives: for changes
/// made through the filesystem, and for contents rewritten under it (as memory-mapped
/// writes and NTFS's late timestamps leave a file), which must make strata walk instead.
/// `fill` runs a script in the mounted volume; `blocks` gives the volume byte offsets of
/// a file's data, as an independent tool reads them.
fn catalog_from_parent_matches_a_walk(
    vol: &Path,
    fill: &dyn Fn(&str),
    blocks: &dyn Fn(&str) -> Vec<u64>,
    modes: bool,
) {
    let dir = vol.parent().unwrap().join("points");
    std::fs::create_dir(&dir).unwrap();
    let p = |n: &str| dir.join(format!("{n}.strata"));
    fill(FROM_PARENT_P0);
    let (entries0, read0) = create_counted(vol, &p("i0"), None);
    assert_eq!(entries0, read0, "a full image's catalog is walked");
    assert!(entries0 > 1600, "{entries0} entries");

    fill(FROM_PARENT_P1);
    let (entries1, read1) = create_counted(vol, &p("i1"), Some(&p("i0")));
    create_counted(vol, &p("w1"), None);
    assert!(
        read1 > 0 && read1 * 4 < entries1,
        "{read1} of {entries1} entries read: not taken from the parent's catalog"
    );
    assert_eq!(
        diff_set(&p("i1"), &p("w1")),
        BTreeSet::new(),
        "i1 against a walk"
    );
    let changes = diff_set(&p("i0"), &p("i1"));
    assert_eq!(changes, diff_set(&p("i0"), &p("w1")));
    for (path, change) in [
        ("/d01/f03.txt", "modified"),
        ("/d05/f20.txt", "modified"),
        ("/d07/f07.txt", "modified"),
        ("/d02/f02.txt", "modified"),
        ("/d09/moved.txt", "renamed"),
        ("/d04/f05.txt", "removed"),
        ("/d08/link.txt", "added"),
        ("/new/n4.txt", "added"),
        // ntfs-3g without a user mapping keeps no modes.
        ("/d10", if modes { "metadata" } else { "" }),
    ] {
        if change.is_empty() {
            continue;
        }
        assert!(
            changes
                .iter()
                .any(|r| r.contains(&format!("\"path\":\"{path}\"")) && r.contains(change)),
            "{path} {change} missing: {changes:#?}"
        );
    }

    // Bytes of keep/k1.bin rewritten on the volume itself: no record changes.
    let at = blocks("keep/k1.bin")[1] + 100;
    let mut f = std::fs::OpenOptions::new().write(true).open(vol).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at)).unwrap();
    f.write_all(b"rewritten under the filesystem").unwrap();
    drop(f);
    let (entries2, read2) = create_counted(vol, &p("i2"), Some(&p("i1")));
    create_counted(vol, &p("w2"), None);
    assert_eq!(read2, entries2, "a change no record explains: walked whole");
    let changes = diff_set(&p("i1"), &p("i2"));
    assert_eq!(changes, diff_set(&p("i1"), &p("w2")));
    assert_eq!(
        changes.into_iter().collect::<Vec<_>>(),
        [r#"{"change":"modified","path":"/keep/k1.bin","type":"file"}"#],
    );
    assert_eq!(
        diff_set(&p("i2"), &p("w2")),
        BTreeSet::new(),
        "i2 against a walk"
    );

    // i1's catalog is stored as a change to i0's: a small part of a whole one.
    let section = |n: &str| catalog_section(&p(n)).expect("a catalog");
    let version = |n: &str| {
        let b = std::fs::read(p(n)).unwrap();
        let at = section(n).0 as usize + 8;
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    };
    assert_eq!((version("i1"), version("w1"), version("i2")), (2, 1, 1));
    assert!(
        section("i1").1 * 10 < section("w1").1,
        "i1's catalog {:?}, a whole one {:?}",
        section("i1"),
        section("w1")
    );

    // A change to i2's catalog, whose base is then damaged: walked instead, same answer.
    fill("open('d11/f11.txt', 'ab').write(b'one more line')\n");
    let (entries3, read3) = create_counted(vol, &p("i3"), Some(&p("i2")));
    assert!(read3 * 4 < entries3, "{read3} of {entries3} read");
    assert_eq!(version("i3"), 2);
    let changes13 = diff_set(&p("i1"), &p("i3"));
    assert!(changes13.iter().any(|r| r.contains("/d11/f11.txt")));
    let (off, len) = section("i2");
    let at = off + 64 + len / 2;
    flip(&p("i2"), at);
    let (rows, err) = query_json(&["diff".into(), s(&p("i1")), s(&p("i3"))]);
    assert!(err.contains("walked instead"), "{err}");
    let rows: BTreeSet<String> = rows.iter().map(Value::to_string).collect();
    assert_eq!(
        rows, changes13,
        "i3 walked when its base's catalog is damaged"
    );
    flip(&p("i2"), at);

    // Merged into its parent, the point keeps its catalog, stored whole.
    ok(strata()
        .args(["consolidate", "--quiet"])
        .arg(p("i3"))
        .output()
        .unwrap());
    assert_eq!(version("i3"), 1);
    assert_eq!(diff_set(&p("i1"), &p("i3")), changes13);
}

#[test]
fn ext4_incremental_catalog_from_the_parents_matches_a_walk() {
    if !require_root("ext4_incremental_catalog_from_the_parents_matches_a_walk") {
        return;
    }
    let dir = tempdir();
    let src = ExtSrc {
        file: dir.path().join("vol.ext4"),
        part: None,
    };
    std::fs::File::create(&src.file)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    sh("mkfs.ext4", &["-q", "-F", "-b", "4096", &s(&src.file)]);
    let fill = |script: &str| {
        with_ext4(&src, false, |m| {
            let o = Command::new("python3")
                .args(["-c", script])
                .current_dir(m)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        })
    };
    // debugfs (e2fsprogs) reads the file's blocks.
    let blocks = |path: &str| -> Vec<u64> {
        let out = sh(
            "debugfs",
            &["-R", &format!("blocks /{path}"), &s(&src.file)],
        );
        out.split_whitespace()
            .map(|b| b.parse::<u64>().unwrap() * 4096)
            .collect()
    };
    catalog_from_parent_matches_a_walk(&src.file, &fill, &blocks, true);
}

#[test]
fn ntfs_incremental_catalog_from_the_parents_matches_a_walk() {
    if !require_root("ntfs_incremental_catalog_from_the_parents_matches_a_walk") {
        return;
    }
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    let fill = |script: &str| ntfs3g_fill(&vol, script);
    // The Sleuth Kit reads the file's clusters.
    let blocks = |path: &str| -> Vec<u64> {
        let ino = sh("ifind", &["-f", "ntfs", "-n", path, &s(&vol)]);
        let stat = sh("istat", &["-f", "ntfs", &s(&vol), ino.trim()]);
        let fsstat = sh("fsstat", &["-f", "ntfs", &s(&vol)]);
        let cluster: u64 = fsstat
            .lines()
            .find_map(|l| l.strip_prefix("Cluster Size: "))
            .expect("fsstat gives the cluster size")
            .trim()
            .parse()
            .unwrap();
        let runs = stat
            .split("Type: $DATA (128-")
            .nth(1)
            .expect("istat lists $DATA");
        runs.lines()
            .skip(1)
            .flat_map(str::split_whitespace)
            .map_while(|c| c.parse::<u64>().ok())
            .map(|c| c * cluster)
            .collect()
    };
    catalog_from_parent_matches_a_walk(&vol, &fill, &blocks, false);
}
