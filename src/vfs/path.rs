//! Names from an image made safe to create on the destination, reversibly.
//!
//! A filesystem in an image may hold names the destination cannot take or that would
//! escape the destination directory: NTFS allows `/`-free names only in theory (a damaged
//! or hostile volume can hold anything), ext names may be `..`-like after decoding, and
//! control characters confuse terminals and scripts. [`escape_name`] turns such a name
//! into one path component that is safe to create: each offending byte becomes `%XX` (its
//! UTF-8 bytes in upper-case hex), and a `%` is itself escaped when a hex digit follows it,
//! so [`unescape_name`] always gives the original back and ordinary names such as
//! `100% done.txt` stay as they are.

use std::borrow::Cow;

/// The components of a `/`-separated path inside an image, with `.`, empty components and
/// `..` applied (`..` stops at the top, so a path never leaves the tree).
pub fn components(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts
}

/// Characters that cannot appear in a path component on this system, besides control
/// characters.
fn reserved(c: char) -> bool {
    if cfg!(windows) {
        matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
    } else {
        c == '/'
    }
}

fn push_escaped(out: &mut String, c: char) {
    let mut b = [0u8; 4];
    for byte in c.encode_utf8(&mut b).bytes() {
        out.push_str(&format!("%{byte:02X}"));
    }
}

/// `name` as a safe single path component: no `/` (and on Windows none of `\:*?"<>|`), no
/// control characters, not empty, not `.` or `..` (and on Windows not ending in a dot or a
/// space). Unchanged names are borrowed.
pub fn escape_name(name: &str) -> Cow<'_, str> {
    if name.is_empty() {
        return Cow::Borrowed("%");
    }
    if name == "%" {
        // "%" alone stands for the empty name.
        return Cow::Borrowed("%25");
    }
    if name == "." {
        return Cow::Borrowed("%2E");
    }
    if name == ".." {
        return Cow::Borrowed("%2E%2E");
    }
    let chars: Vec<char> = name.chars().collect();
    let bad = |i: usize| {
        let c = chars[i];
        c.is_control()
            || reserved(c)
            || (c == '%' && chars.get(i + 1).is_some_and(|n| n.is_ascii_hexdigit()))
            || (cfg!(windows) && i + 1 == chars.len() && (c == '.' || c == ' '))
    };
    if !(0..chars.len()).any(bad) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        if bad(i) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The original name of a component made by [`escape_name`].
pub fn unescape_name(name: &str) -> String {
    if name == "%" {
        return String::new();
    }
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_kept() {
        for n in [
            "a.txt",
            "100% done.json",
            "Übersicht",
            "中文文档.log",
            "a%",
            "%zz",
            "...",
            "a..b",
        ] {
            if cfg!(windows) && n.ends_with('.') {
                // Windows cannot keep a trailing dot: escaped, and reversibly.
                assert_ne!(escape_name(n), n);
                assert_eq!(unescape_name(&escape_name(n)), n);
                continue;
            }
            assert_eq!(escape_name(n), n);
            assert_eq!(unescape_name(n), n);
        }
    }

    #[test]
    fn hostile_names_are_escaped_reversibly() {
        let cases = [
            ("..", "%2E%2E"),
            (".", "%2E"),
            ("", "%"),
            ("a/b", "a%2Fb"),
            ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd"),
            ("bell\x07", "bell%07"),
            ("new\nline", "new%0Aline"),
            ("%2F", "%252F"),
            ("%2/", "%252%2F"),
            ("%\n", "%%0A"),
            ("del\u{7f}", "del%7F"),
            ("c1\u{85}", "c1%C2%85"),
        ];
        for (name, want) in cases {
            let e = escape_name(name);
            assert_eq!(e, want, "{name:?}");
            assert!(!e.contains('/') && e != "." && e != ".." && !e.is_empty());
            assert!(!e.chars().any(|c| c.is_control()));
            assert_eq!(unescape_name(&e), name, "{name:?}");
        }
    }

    #[test]
    fn escaping_is_injective() {
        let alphabet = ["%", "2", "F", "/", ".", "a", "\n", "0"];
        let mut seen = std::collections::HashMap::new();
        // Every name of up to 4 symbols from the alphabet.
        let mut names = vec![String::new()];
        for _ in 0..4 {
            let next: Vec<String> = names
                .iter()
                .flat_map(|n| alphabet.iter().map(move |a| format!("{n}{a}")))
                .collect();
            names.extend(next.clone());
            names.dedup();
            names = names
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
        }
        for n in names {
            let e = escape_name(&n).into_owned();
            assert_eq!(unescape_name(&e), n, "{n:?} -> {e:?}");
            if let Some(other) = seen.insert(e.clone(), n.clone()) {
                panic!("{other:?} and {n:?} both escape to {e:?}");
            }
        }
    }
}
