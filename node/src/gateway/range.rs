//! The `Range` header of a download, as Tahoe's web API reads it: one
//! `bytes` range (of several, the first), `first-last`, `first-` or the
//! suffix `-count`; a last byte past the end is cut to the end; a range
//! that starts at or past the end is unsatisfiable (416); a header that
//! does not parse is ignored (the whole file, 200), as RFC 9110 says.
//! Numbers are read with checked arithmetic: one too large for 64 bits makes
//! the header unparseable, never a wrapped offset.

/// What a download answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// The whole file (no Range header, or one that does not parse).
    Whole,
    /// Bytes `first..=last` (206).
    Part {
        /// First byte.
        first: u64,
        /// Last byte, included.
        last: u64,
    },
    /// The range starts at or past the end (416).
    Unsatisfiable,
}

/// Read `header` for a file of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> Ranged {
    let Some(h) = header else {
        return Ranged::Whole;
    };
    let Some(set) = h.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    let Some(first_spec) = set.split(',').next() else {
        return Ranged::Whole;
    };
    let Some((a, b)) = first_spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (first, last) = match (a.trim().is_empty(), b.trim().is_empty()) {
        // "-count": the last count bytes.
        (true, false) => {
            let Some(count) = num(b) else {
                return Ranged::Whole;
            };
            if count == 0 || size == 0 {
                return Ranged::Unsatisfiable;
            }
            (size.saturating_sub(count), size - 1)
        }
        // "first-".
        (false, true) => {
            let Some(first) = num(a) else {
                return Ranged::Whole;
            };
            (first, u64::MAX)
        }
        (false, false) => {
            let (Some(first), Some(last)) = (num(a), num(b)) else {
                return Ranged::Whole;
            };
            if last < first {
                return Ranged::Whole;
            }
            (first, last)
        }
        (true, true) => return Ranged::Whole,
    };
    if first >= size {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part {
        first,
        last: last.min(size - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_tahoe_reads_them() {
        let p = |h: &str| parse(Some(h), 1000);
        assert_eq!(parse(None, 1000), Ranged::Whole);
        assert_eq!(p("bytes=0-9"), Ranged::Part { first: 0, last: 9 });
        assert_eq!(
            p("bytes=500-"),
            Ranged::Part {
                first: 500,
                last: 999
            }
        );
        assert_eq!(
            p("bytes=-10"),
            Ranged::Part {
                first: 990,
                last: 999
            }
        );
        assert_eq!(
            p("bytes=-5000"),
            Ranged::Part {
                first: 0,
                last: 999
            }
        );
        assert_eq!(
            p("bytes=990-5000"),
            Ranged::Part {
                first: 990,
                last: 999
            }
        );
        assert_eq!(
            p("bytes= 1-2 , 5-6"),
            Ranged::Part { first: 1, last: 2 },
            "the first of several"
        );
        assert_eq!(p("bytes=1000-"), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=5000-6000"), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Ranged::Unsatisfiable);
        for ignored in [
            "bytes=9-1",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=99999999999999999999999-",
            "bytes=0-99999999999999999999999",
            "",
        ] {
            assert_eq!(p(ignored), Ranged::Whole, "{ignored}");
        }
        assert_eq!(
            parse(Some("bytes=18446744073709551615-"), u64::MAX),
            Ranged::Unsatisfiable
        );
        assert_eq!(
            parse(Some("bytes=-1"), u64::MAX),
            Ranged::Part {
                first: u64::MAX - 1,
                last: u64::MAX - 1
            }
        );
    }
}
