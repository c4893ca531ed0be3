//! Query arguments as Tahoe's web API reads them: `t=` selects the
//! operation or format, booleans are `true`/`t`/`1`/`on` or
//! `false`/`f`/`0`/`off` in any case (anything else is a 400), a capability
//! in the path must parse, and upload parameters (`k`, `n`, `happy`,
//! grapevine's own) must be valid.

use std::collections::HashMap;

use grapevine_storage::{Cap, Params};

use crate::gateway::error::GatewayError;

/// Query arguments by name, the first of repeated ones winning, as
/// Tahoe's `get_arg` takes them (`?t=json&t=info` is JSON).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args(HashMap<String, String>);

impl std::ops::Deref for Args {
    type Target = HashMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Args {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl FromIterator<(String, String)> for Args {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let mut out = HashMap::new();
        for (k, v) in pairs {
            out.entry(k).or_insert(v);
        }
        Args(out)
    }
}

impl<'de> serde::Deserialize<'de> for Args {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("query arguments")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<Args, M::Error> {
                let mut out = HashMap::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    out.entry(k).or_insert(v);
                }
                Ok(Args(out))
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// `t=`, trimmed ("" if absent).
pub fn t(q: &Args) -> &str {
    q.get("t").map(|s| s.trim()).unwrap_or("")
}

/// A 400 for an unknown `t=` on `what`.
pub fn bad_t(what: &str, t: &str) -> GatewayError {
    GatewayError::BadRequest(format!(
        "{what}: bad t={:?}",
        t.chars().take(40).collect::<String>()
    ))
}

/// Boolean argument `name` (`default` if absent).
///
/// # Errors
/// [`GatewayError::BadRequest`] for a value that is not a boolean.
pub fn boolean(q: &Args, name: &str, default: bool) -> Result<bool, GatewayError> {
    match q.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "t" | "1" | "on" => Ok(true),
            "false" | "f" | "0" | "off" => Ok(false),
            _ => Err(GatewayError::BadRequest(format!(
                "invalid boolean argument {name}={:?}",
                v.chars().take(40).collect::<String>()
            ))),
        },
    }
}

/// The capability `text` from a URL.
///
/// # Errors
/// [`GatewayError::BadCap`].
pub fn cap(text: &str) -> Result<Cap, GatewayError> {
    text.parse::<Cap>()
        .map_err(|e| GatewayError::bad_cap(text, e))
}

/// Upload parameters: `k`, `n` and `happy` from `q` over `default`.
///
/// # Errors
/// [`GatewayError::BadRequest`] for numbers that do not parse or do not
/// make valid parameters.
pub fn params(q: &Args, default: Params) -> Result<Params, GatewayError> {
    let num = |name: &str, d: u16| -> Result<u16, GatewayError> {
        match q.get(name) {
            None => Ok(d),
            Some(v) => v.trim().parse().map_err(|_| {
                GatewayError::BadRequest(format!(
                    "{name}={:?} is not a number from 1 to 256",
                    v.chars().take(20).collect::<String>()
                ))
            }),
        }
    };
    let p = Params {
        k: num("k", default.k)?,
        n: num("n", default.n)?,
        happy: num("happy", default.happy)?,
    };
    p.validate()
        .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Args {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// The first of repeated arguments wins, as in Tahoe (`get_arg`
    /// returns the first); it used to be the last.
    #[test]
    fn the_first_of_repeated_arguments_wins() {
        let uri: axum::http::Uri = "/uri?t=json&t=info&filename=a.txt&filename=b.html&k=3&k=4"
            .parse()
            .unwrap();
        let axum::extract::Query(parsed) =
            axum::extract::Query::<Args>::try_from_uri(&uri).unwrap();
        assert_eq!(t(&parsed), "json");
        assert_eq!(parsed.get("filename").map(String::as_str), Some("a.txt"));
        assert_eq!(params(&parsed, Params::default()).unwrap().k, 3);
        assert_eq!(
            q(&[("x", "1"), ("x", "2")]).get("x").map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn booleans_as_tahoe_reads_them() {
        for yes in ["true", "T", "1", "On"] {
            assert!(boolean(&q(&[("x", yes)]), "x", false).unwrap());
        }
        for no in ["false", "F", "0", "off"] {
            assert!(!boolean(&q(&[("x", no)]), "x", true).unwrap());
        }
        assert!(boolean(&q(&[]), "x", true).unwrap());
        assert!(matches!(
            boolean(&q(&[("x", "yes")]), "x", false),
            Err(GatewayError::BadRequest(_))
        ));
    }

    #[test]
    fn parameters_are_checked() {
        let d = Params::default();
        assert_eq!(params(&q(&[]), d).unwrap(), d);
        let p = params(&q(&[("k", "2"), ("n", "4"), ("happy", "3")]), d).unwrap();
        assert_eq!((p.k, p.n, p.happy), (2, 4, 3));
        for bad in [
            &[("k", "0")][..],
            &[("k", "11")],
            &[("n", "300")],
            &[("n", "x")],
            &[("happy", "-1")],
            &[("n", "70000")],
        ] {
            assert!(params(&q(bad), d).is_err(), "{bad:?}");
        }
        assert!(matches!(
            cap("URI:CHK:abc"),
            Err(GatewayError::BadCap { .. })
        ));
        assert!(cap("gv:lit:mfrgg").is_ok());
    }
}
