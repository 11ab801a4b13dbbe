//! A create killed at any moment leaves no file any command accepts as an image, never
//! touches an existing DEST, and a rerun succeeds.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn killed_create_leaves_no_accepted_image_and_old_dest_intact() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    // Slow enough (level 19, one thread) that kills land mid-run.
    let mut data = text(48 << 20, 31);
    data.extend(noise(8 << 20, 32));
    std::fs::write(&disk, &data).unwrap();
    let dest = d.path().join("backup.strata");
    let partial = d.path().join("backup.strata.partial");

    // An older, valid image already at DEST.
    let small = d.path().join("small.img");
    std::fs::write(&small, text(1 << 20, 33)).unwrap();
    ok(run(&[&"create", &small, &dest, &"-q"]));
    let old = sha256(&dest);

    let mut killed_mid_run = 0;
    for delay_ms in [0u64, 30, 120, 300, 600, 1000, 1500, 2500] {
        let mut child = strata()
            .args(["create", "--force", "-q", "--level", "19", "--threads", "1"])
            .arg(&disk)
            .arg(&dest)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().ok(); // SIGKILL
        let finished = child.wait().unwrap().success();
        if finished {
            // It completed before the kill: DEST is the new, valid image.
            ok(run(&[&"verify", &dest, &"-q"]));
            ok(run(&[&"create", &small, &dest, &"-q", &"--force"]));
            continue;
        }
        killed_mid_run += 1;
        assert_eq!(
            sha256(&dest),
            old,
            "DEST changed by a killed create ({delay_ms} ms)"
        );
        ok(run(&[&"verify", &dest, &"-q"]));
        if partial.exists() {
            for cmd in ["info", "verify", "restore"] {
                let target = d.path().join("never.img");
                let o = if cmd == "restore" {
                    run(&[&cmd, &partial, &target])
                } else {
                    run(&[&cmd, &partial])
                };
                let (code, _, err) = outcome(&o);
                assert_ne!(code, 0, "{cmd} accepted a partial image ({delay_ms} ms)");
                assert!(
                    err.contains("incomplete") || err.contains("not a strata image"),
                    "{err}"
                );
                assert!(!target.exists());
            }
        }
    }
    assert!(killed_mid_run >= 3, "kills did not land mid-run");
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
