//! `create`, `consolidate` and `restore` killed (SIGKILL) at 20 moments each, spread over
//! a whole run: no partial output is ever accepted as valid, existing images and targets
//! are untouched, every point of a chain stays readable, and a rerun succeeds.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Kills per command.
const KILLS: u64 = 20;

/// How long `cmd` takes when left alone (it is then undone by the caller).
fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let s = cmd.status().unwrap();
    assert!(s.success(), "{cmd:?}");
    t.elapsed()
}

/// Moment `i` of [`KILLS`]: spread over 0..1.1 × `full` (so the last ones may come after
/// the end), with a fixed jitter so that kills do not line up with the work's phases.
fn kill_delay(i: u64, full: Duration) -> Duration {
    let jitter = noise(8, 900 + i)[0] as f64 / 255.0;
    full.mul_f64((i as f64 + jitter) / KILLS as f64 * 1.1)
}

/// Starts `cmd`, sends SIGKILL after `delay`; true when it had finished by itself.
fn kill_after(cmd: &mut Command, delay: Duration) -> bool {
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(delay);
    child.kill().ok(); // SIGKILL
    child.wait().unwrap().success()
}

/// What a killed run left in its `.partial`, judged by its bytes.
#[derive(Default)]
struct Leftovers {
    /// Incomplete, and refused by every command for that reason (the trailer logic).
    incomplete: u64,
    /// Complete (killed after the last byte, before the rename), and restoring exactly.
    complete: u64,
}

/// No command accepts `partial` (a killed run's leftover) as an image. `*.partial` is
/// refused by its name alone, so its bytes are also copied under another name: then every
/// command must refuse them as incomplete, unless they are a whole image, which must verify
/// and restore to a disk of sha256 `want`.
fn refused_everywhere(partial: &Path, scratch: &Path, want: &str, seen: &mut Leftovers) {
    if !partial.exists() {
        return;
    }
    let copy = scratch.join("killed-run.strata");
    std::fs::copy(partial, &copy).unwrap();
    let complete = run(&[&"verify", &copy, &"-q"]).status.success();
    if complete {
        let out = scratch.join("killed-run.img");
        ok(run(&[&"restore", &copy, &out, &"-q", &"--force"]));
        assert_eq!(sha256(&out), want, "a complete leftover restores exactly");
        std::fs::remove_file(&out).unwrap();
        seen.complete += 1;
    } else {
        seen.incomplete += 1;
    }
    let candidates: &[&Path] = if complete {
        &[partial]
    } else {
        &[partial, &copy]
    };
    for image in candidates {
        for cmd in ["info", "verify", "restore"] {
            let target = scratch.join("never.img");
            let o = if cmd == "restore" {
                run(&[&cmd, image, &target])
            } else {
                run(&[&cmd, image])
            };
            let (code, _, err) = outcome(&o);
            assert_ne!(code, 0, "{cmd} accepted {}", image.display());
            assert!(
                err.contains("incomplete")
                    || err.contains("not a strata image")
                    || err.contains("file ends inside the 4096-byte header"),
                "{err}"
            );
            assert!(!target.exists());
        }
    }
    std::fs::remove_file(&copy).unwrap();
}

#[test]
fn killed_create_leaves_no_accepted_image_and_old_dest_intact() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    // Slow enough (level 19, one thread) that kills land mid-run.
    let mut data = text(8 << 20, 31);
    data.extend(noise(2 << 20, 32));
    std::fs::write(&disk, &data).unwrap();
    let dest = d.path().join("backup.strata");
    let partial = d.path().join("backup.strata.partial");

    // An older, valid image already at DEST.
    let small = d.path().join("small.img");
    std::fs::write(&small, text(1 << 20, 33)).unwrap();
    ok(run(&[&"create", &small, &dest, &"-q"]));
    let old = sha256(&dest);
    let old_copy = d.path().join("old.strata.copy");
    std::fs::copy(&dest, &old_copy).unwrap();
    let put_back = || std::fs::copy(&old_copy, &dest).unwrap();

    let create = || {
        let mut c = strata();
        c.args(["create", "--force", "-q", "--level", "19", "--threads", "1"])
            .arg(&disk)
            .arg(&dest);
        c
    };
    let full = timed(&mut create());
    put_back();
    let mut killed_mid_run = 0;
    let want = sha256(&disk);
    let mut seen = Leftovers::default();
    for i in 0..KILLS {
        let delay = kill_delay(i, full);
        if kill_after(&mut create(), delay) {
            // It completed before the kill: DEST is the new, valid image.
            ok(run(&[&"verify", &dest, &"-q"]));
            put_back();
            continue;
        }
        killed_mid_run += 1;
        // DEST is the old image, or the new one when the kill came after the rename.
        ok(run(&[&"verify", &dest, &"-q"]));
        if sha256(&dest) != old {
            let restored = d.path().join("check.img");
            ok(run(&[&"restore", &dest, &restored, &"-q", &"--force"]));
            assert!(
                same_content(&disk, &restored),
                "DEST changed by a create killed at {delay:?}"
            );
            put_back();
        }
        refused_everywhere(&partial, d.path(), &want, &mut seen);
    }
    eprintln!(
        "create: {KILLS} kills over {full:?}, {killed_mid_run} mid-run, leftovers: {} incomplete, {} complete",
        seen.incomplete, seen.complete
    );
    assert!(killed_mid_run >= 10, "kills did not land mid-run");
    assert!(seen.incomplete >= 5, "too few incomplete leftovers to test");
    // A rerun replaces the stale partial and succeeds.
    ok(run(&[&"create", &disk, &dest, &"-q", &"--force"]));
    assert!(!partial.exists());
    let restored = d.path().join("restored.img");
    ok(run(&[&"restore", &dest, &restored, &"-q"]));
    assert!(same_content(&disk, &restored));
}

#[cfg(unix)]
#[test]
fn interrupted_create_removes_its_partial_output() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    std::fs::write(&disk, text(64 << 20, 34)).unwrap();
    let dest = d.path().join("backup.strata");
    let mut child = strata()
        .args(["create", "-q", "--level", "19", "--threads", "1"])
        .arg(&disk)
        .arg(&dest)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "Ctrl-C is reported as an error");
    assert!(!dest.exists());
    assert!(!d.path().join("backup.strata.partial").exists());
}

/// A consolidation killed at any moment loses no point of the chain: the merged point and
/// the one above it read back exactly, whichever files are left, and a rerun completes.
#[test]
fn killed_consolidate_loses_no_point() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    let mut data = text(3 << 20, 35);
    data.extend(noise(1 << 20, 36));
    std::fs::write(&disk, &data).unwrap();
    let set = d.path().join("set");
    let keep = d.path().join("pristine");
    for dir in [&set, &keep] {
        std::fs::create_dir(dir).unwrap();
    }
    let (full, i1, i2) = (
        set.join("full.strata"),
        set.join("i1.strata"),
        set.join("i2.strata"),
    );
    let mut want = Vec::new();
    for (i, image) in [&full, &i1, &i2].into_iter().enumerate() {
        if i > 0 {
            write_at(&disk, (i as u64) << 20, &noise(1 << 20, 37 + i as u64));
            let parent = if i == 1 { &full } else { &i1 };
            ok(run(&[
                &"create",
                &disk,
                image,
                &"-q",
                &"--incremental",
                parent,
            ]));
        } else {
            ok(run(&[&"create", &disk, image, &"-q"]));
        }
        want.push(sha256(&disk));
        std::fs::copy(image, keep.join(image.file_name().unwrap())).unwrap();
    }
    let reset = || {
        for n in ["full.strata", "i1.strata", "i2.strata"] {
            std::fs::copy(keep.join(n), set.join(n)).unwrap();
        }
        let _ = std::fs::remove_file(set.join("i1.strata.partial"));
    };
    let point = |image: &Path| {
        let out = d.path().join("point.img");
        let _ = std::fs::remove_file(&out);
        ok(run(&[&"restore", &image, &out, &"-q"]));
        sha256(&out)
    };
    let consolidate = || {
        let mut c = strata();
        c.args(["consolidate", "-q", "--level", "19", "--threads", "1"])
            .arg(&i1);
        c
    };
    // The shorter of two runs: one slowed by a burst of other work would spread the kills
    // past the end of every later run.
    let took = timed(&mut consolidate());
    reset();
    let took = took.min(timed(&mut consolidate()));
    let mut mid_run = 0;
    let mut seen = Leftovers::default();
    for i in 0..KILLS {
        reset();
        let delay = kill_delay(i, took);
        let finished = kill_after(&mut consolidate(), delay);
        mid_run += u64::from(!finished);
        // i1's point and i2's are always there; the full image goes only when merged.
        assert_eq!(point(&i1), want[1], "i1 after a kill at {delay:?}");
        assert_eq!(point(&i2), want[2], "i2 after a kill at {delay:?}");
        if full.exists() {
            ok(run(&[&"verify", &full, &"-q"]));
        }
        // The output is i1's point merged into one full image.
        refused_everywhere(
            &set.join("i1.strata.partial"),
            d.path(),
            &want[1],
            &mut seen,
        );
        if !finished {
            // A rerun completes (or finds the work already done).
            let (code, out, err) = outcome(&run(&[&"consolidate", &i1, &"-q"]));
            if code != 0 {
                assert!(err.contains("full image"), "rerun: {out}{err}");
            }
            assert_eq!(point(&i1), want[1]);
            assert_eq!(point(&i2), want[2]);
        }
    }
    eprintln!(
        "consolidate: {KILLS} kills over {took:?}, {mid_run} mid-run, leftovers: {} incomplete, {} complete",
        seen.incomplete, seen.complete
    );
    assert!(mid_run >= 10, "kills did not land mid-run");
    assert!(seen.incomplete >= 3, "too few incomplete leftovers to test");
}

/// A restore to a file killed at any moment leaves no file at TARGET (only the
/// `.partial`), never changes an existing target, and a rerun restores the disk exactly.
/// Without `--force` an existing target is refused before anything is written.
// Under wine a restore's duration varies several-fold from run to run, so the kill moments
// cannot be placed inside runs; the Windows build runs the other kill tests.
#[cfg(unix)]
#[test]
fn killed_restore_never_leaves_a_target_that_looks_restored() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    let mut data = text(24 << 20, 38);
    data.extend(noise(4 << 20, 39));
    std::fs::write(&disk, &data).unwrap();
    let image = d.path().join("disk.strata");
    ok(run(&[&"create", &disk, &image, &"-q", &"--level", &"19"]));
    let target = d.path().join("restored.img");
    let partial = d.path().join("restored.img.partial");
    let old = text(1 << 20, 40);
    std::fs::write(&target, &old).unwrap();

    let (code, _, err) = outcome(&run(&[&"restore", &image, &target, &"-q"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), old);

    let restore = || {
        let mut c = strata();
        c.args(["restore", "--force", "-q", "--threads", "1"])
            .arg(&image)
            .arg(&target);
        c
    };
    // The quickest of three runs: the first one also pays for a cold start (seconds under
    // wine), which would put most kills after the end.
    let took = (0..3).map(|_| timed(&mut restore())).min().unwrap();
    assert!(same_content(&disk, &target));
    std::fs::write(&target, &old).unwrap();
    let mut mid_run = 0;
    for i in 0..KILLS {
        let delay = kill_delay(i, took);
        if kill_after(&mut restore(), delay) {
            assert!(same_content(&disk, &target), "a finished restore is exact");
            std::fs::write(&target, &old).unwrap();
            continue;
        }
        mid_run += 1;
        // The old target, or the whole disk when the kill came after the rename.
        let unchanged = std::fs::read(&target).unwrap() == old;
        assert!(
            unchanged || same_content(&disk, &target),
            "target changed by a restore killed at {delay:?}"
        );
        if !unchanged {
            std::fs::write(&target, &old).unwrap();
        }
    }
    eprintln!("restore: {KILLS} kills over {took:?}, {mid_run} mid-run");
    assert!(mid_run >= 10, "kills did not land mid-run");
    ok(run(&[&"restore", &image, &target, &"-q", &"--force"]));
    assert!(same_content(&disk, &target));
    assert!(!partial.exists(), "the rerun removed the stale partial");
}
