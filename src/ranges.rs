//! Sets of byte ranges `[start, end)`: what filesystems use, what `create` reads.

/// A sorted list of disjoint, non-adjacent, non-empty half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// The empty set.
    pub fn new() -> Ranges {
        Ranges(Vec::new())
    }

    /// Builds a set from ranges in any order, possibly overlapping; empty ones are dropped.
    pub fn from_unsorted(mut v: Vec<(u64, u64)>) -> Ranges {
        v.retain(|(a, b)| a < b);
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Ranges(out)
    }

    /// Adds `[a, b)`. Cheap when ranges come in ascending order (the usual case for bitmaps).
    pub fn push(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        match self.0.last_mut() {
            Some(last) if a >= last.0 => {
                if a <= last.1 {
                    last.1 = last.1.max(b);
                } else {
                    self.0.push((a, b));
                }
            }
            None => self.0.push((a, b)),
            Some(_) => {
                let mut v = std::mem::take(&mut self.0);
                v.push((a, b));
                *self = Ranges::from_unsorted(v);
            }
        }
    }

    /// The ranges, ascending.
    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Total bytes covered.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a).sum()
    }

    /// Every range moved by `delta` (partition-relative to absolute).
    pub fn shifted(&self, delta: u64) -> Ranges {
        Ranges(
            self.0
                .iter()
                .map(|&(a, b)| (a.saturating_add(delta), b.saturating_add(delta)))
                .collect(),
        )
    }

    /// The set limited to `[0, end)`.
    pub fn clipped(&self, end: u64) -> Ranges {
        self.intersect(&Ranges(vec![(0, end)]))
    }

    /// Union.
    pub fn union(&self, other: &Ranges) -> Ranges {
        let mut v = self.0.clone();
        v.extend_from_slice(&other.0);
        Ranges::from_unsorted(v)
    }

    /// Intersection.
    pub fn intersect(&self, other: &Ranges) -> Ranges {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.0.len() && j < other.0.len() {
            let (a1, b1) = self.0[i];
            let (a2, b2) = other.0[j];
            let (a, b) = (a1.max(a2), b1.min(b2));
            if a < b {
                out.push((a, b));
            }
            if b1 < b2 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Ranges(out)
    }

    /// `[0, end)` minus this set.
    pub fn complement(&self, end: u64) -> Ranges {
        let mut out = Vec::new();
        let mut pos = 0;
        for &(a, b) in &self.0 {
            if a >= end {
                break;
            }
            if a > pos {
                out.push((pos, a));
            }
            pos = pos.max(b);
        }
        if pos < end {
            out.push((pos, end));
        }
        Ranges(out)
    }

    /// This set minus `other`.
    pub fn subtract(&self, other: &Ranges) -> Ranges {
        let end = self.0.last().map_or(0, |r| r.1);
        self.intersect(&other.complement(end))
    }

    /// Adds one range per run of set bits of an LSB-first bitmap: bit `i` covers bytes
    /// `[base + i * unit, base + (i + 1) * unit)`. Bits at `bits` and beyond are ignored
    /// (bitmaps are padded to whole bytes or blocks, sometimes with ones).
    pub fn add_bitmap(&mut self, bitmap: &[u8], bits: u64, base: u64, unit: u64) {
        let bits = bits.min(bitmap.len() as u64 * 8);
        let mut run: Option<u64> = None;
        let mut i = 0u64;
        while i < bits {
            // Whole bytes of zeros or ones are skipped at once.
            if i & 7 == 0 && i + 8 <= bits {
                let byte = bitmap[(i / 8) as usize];
                if byte == 0 || byte == 0xFF {
                    match (byte, run) {
                        (0, Some(s)) => {
                            self.push(base + s * unit, base + i * unit);
                            run = None;
                        }
                        (0xFF, None) => run = Some(i),
                        _ => {}
                    }
                    i += 8;
                    continue;
                }
            }
            let set = bitmap[(i / 8) as usize] >> (i % 8) & 1 == 1;
            match (set, run) {
                (true, None) => run = Some(i),
                (false, Some(s)) => {
                    self.push(base + s * unit, base + i * unit);
                    run = None;
                }
                _ => {}
            }
            i += 1;
        }
        if let Some(s) = run {
            self.push(base + s * unit, base + bits * unit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let a = Ranges::from_unsorted(vec![(10, 20), (0, 5), (18, 30), (40, 40)]);
        assert_eq!(a.as_slice(), &[(0, 5), (10, 30)]);
        let b = Ranges::from_unsorted(vec![(3, 12), (25, 50)]);
        assert_eq!(a.intersect(&b).as_slice(), &[(3, 5), (10, 12), (25, 30)]);
        assert_eq!(a.union(&b).as_slice(), &[(0, 50)]);
        assert_eq!(a.complement(35).as_slice(), &[(5, 10), (30, 35)]);
        assert_eq!(a.subtract(&b).as_slice(), &[(0, 3), (12, 25)]);
        assert_eq!(a.total(), 25);
        let mut c = Ranges::new();
        c.push(10, 20);
        c.push(20, 25);
        c.push(0, 3);
        assert_eq!(c.as_slice(), &[(0, 3), (10, 25)]);
    }

    #[test]
    fn bitmap_runs() {
        let mut r = Ranges::new();
        // bits 0-1, 8-23, 30 set; bit 31 set but past `bits`.
        r.add_bitmap(&[0b0000_0011, 0xFF, 0xFF, 0b1100_0000], 31, 1000, 10);
        assert_eq!(r.as_slice(), &[(1000, 1020), (1080, 1240), (1300, 1310)]);
    }
}
