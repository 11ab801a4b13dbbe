//! The worked example of docs/FORMAT.md ("A tiny image") is what strata writes: the
//! documented command is run and its output dumped as the document shows it.
#![cfg(unix)]

mod common;

use common::*;
use std::fmt::Write as _;
use std::path::Path;

/// The code blocks of the section titled `title`, in order.
fn code_blocks(doc: &str, title: &str) -> Vec<String> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with(title))
        .unwrap_or_else(|| panic!("no section {title}"));
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.starts_with("```")) {
            (None, true) => current = Some(String::new()),
            (Some(b), true) => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), false) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, false) => {}
        }
    }
    blocks
}

/// `xxd FILE` without the lines whose 16 bytes are all zero.
fn xxd_without_zero_lines(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        if line.iter().all(|&b| b == 0) {
            continue;
        }
        let mut hex = String::new();
        for (j, pair) in line.chunks(2).enumerate() {
            if j > 0 {
                hex.push(' ');
            }
            for b in pair {
                write!(hex, "{b:02x}").unwrap();
            }
        }
        let text: String = line
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        writeln!(out, "{:08x}: {hex:<39}  {text}", i * 16).unwrap();
    }
    out
}

#[test]
fn the_tiny_image_of_format_md_is_what_strata_writes() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FORMAT.md"))
        .unwrap();
    let blocks = code_blocks(&doc, "A tiny image");
    assert_eq!(blocks.len(), 2, "a command and a dump");
    let (command, dump) = (blocks[0].trim(), &blocks[1]);

    // The document names /tmp/tiny.img, and the source path is recorded in the image: the
    // example is made there, one run at a time.
    let lock = std::fs::File::create("/tmp/strata-format-example.lock").unwrap();
    lock.lock().unwrap();
    let disk = Path::new("/tmp/tiny.img");
    let image = Path::new("/tmp/tiny.strata");
    let mut bytes = vec![0u8; 16 << 10];
    bytes[4096..4096 + 16].copy_from_slice(b"hello, strata!\n\n");
    std::fs::write(disk, &bytes).unwrap();
    let _ = std::fs::remove_file(image);

    let mut words = command.split_whitespace();
    let mut cmd = strata();
    cmd.current_dir("/tmp");
    for w in words.by_ref() {
        match w.split_once('=') {
            Some((k, v)) if w != "strata" => {
                cmd.env(k, v);
            }
            _ => {
                assert_eq!(w, "strata", "{command}");
                break;
            }
        }
    }
    cmd.args(words);
    let out = cmd.output().unwrap();
    let got = std::fs::read(image);
    let _ = std::fs::remove_file(disk);
    let _ = std::fs::remove_file(image);
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(xxd_without_zero_lines(&got.unwrap()), *dump);
}
