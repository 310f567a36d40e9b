//! A small walker over toml's spanned document tree that collects every error (with its byte
//! span) instead of stopping at the first, as a serde derive would.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Errors found so far: byte span, dotted key, reason. Also notes: not errors, but what the
/// operator should know about how a value is taken (`check` prints them).
#[derive(Default)]
pub(crate) struct Errors {
    pub(crate) list: Vec<(Range<usize>, String, String)>,
    pub(crate) notes: Vec<(Range<usize>, String, String)>,
    /// Added to every span pushed: where in the file the text being read starts (a
    /// `[[certificate]]` parsed on its own, see `split`).
    pub(crate) offset: usize,
}

impl Errors {
    pub(crate) fn push(&mut self, span: Range<usize>, key: &str, reason: impl Into<String>) {
        let span = self.place(span);
        self.list.push((span, key.to_string(), reason.into()));
    }

    pub(crate) fn note(&mut self, span: Range<usize>, key: &str, text: impl Into<String>) {
        let span = self.place(span);
        self.notes.push((span, key.to_string(), text.into()));
    }

    /// `span` of the text being read as a place in the file.
    pub(crate) fn place(&self, span: Range<usize>) -> Range<usize> {
        span.start + self.offset..span.end + self.offset
    }

    /// `key` holds a value of the wrong type: "expected `expected`, found <its type>".
    pub(crate) fn wrong_type(
        &mut self,
        span: Range<usize>,
        key: &str,
        expected: &str,
        found: &DeValue<'_>,
    ) {
        self.push(
            span,
            key,
            format!("expected {expected}, found {}", found.type_str()),
        );
    }

    /// The errors as `path:line:col: key: reason`, sorted by position.
    pub(crate) fn render(self, text: &str, source: &str) -> Vec<String> {
        render(self.list, text, source, "")
    }

    /// The notes as `path:line:col: key: note: text`, sorted by position.
    pub(crate) fn render_notes(&mut self, text: &str, source: &str) -> Vec<String> {
        render(std::mem::take(&mut self.notes), text, source, "note: ")
    }
}

fn render(
    mut list: Vec<(Range<usize>, String, String)>,
    text: &str,
    source: &str,
    label: &str,
) -> Vec<String> {
    list.sort_by_key(|(s, _, _)| s.start);
    list.into_iter()
        .map(|(span, key, reason)| {
            let (line, col) = line_col(text, span.start);
            // A reason may quote the file (croner echoes the pattern): one clean line each.
            let mut clean = String::with_capacity(reason.len());
            for c in reason.chars() {
                if c.is_control() {
                    clean.extend(c.escape_default());
                } else {
                    clean.push(c);
                }
            }
            format!("{source}:{line}:{col}: {key}: {label}{clean}")
        })
        .collect()
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Strings of an array with their spans, and the array's span.
pub(crate) type StrList = (Vec<(String, Range<usize>)>, Range<usize>);

/// A table being read: remembers which keys were consumed so the rest can be reported.
pub(crate) struct Tbl<'a, 'i> {
    pub(crate) table: &'a DeTable<'i>,
    /// Dotted path of this table (`""` for the root).
    pub(crate) path: String,
    pub(crate) span: Range<usize>,
}

impl<'a, 'i> Tbl<'a, 'i> {
    pub(crate) fn new(table: &'a DeTable<'i>, path: &str, span: Range<usize>) -> Self {
        Tbl {
            table,
            path: path.to_string(),
            span,
        }
    }

    pub(crate) fn key(&self, k: &str) -> String {
        // A key from the file may be empty or hold a newline (`"a\nb" = 1`): quote and escape
        // it so every error stays one well-formed line (found by the fuzz tests).
        let bare = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let k = if bare {
            k.to_string()
        } else {
            format!("{k:?}")
        };
        if self.path.is_empty() {
            k
        } else {
            format!("{}.{k}", self.path)
        }
    }

    pub(crate) fn get(&self, k: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.table
            .iter()
            .find(|(key, _)| key.get_ref().as_ref() == k)
            .map(|(_, v)| v)
    }

    /// Reports every key not in `allowed`.
    pub(crate) fn unknown_keys(&self, allowed: &[&str], errs: &mut Errors) {
        self.unknown_keys_but(allowed, &[], errs);
    }

    /// [`Self::unknown_keys`], silent on `refused`: keys the caller reports with a better
    /// reason (and that the hint must not offer).
    pub(crate) fn unknown_keys_but(&self, allowed: &[&str], refused: &[&str], errs: &mut Errors) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref().as_ref();
            if !allowed.contains(&name) && !refused.contains(&name) {
                let hint = if allowed.is_empty() {
                    String::new()
                } else {
                    format!(" (expected one of: {})", allowed.join(", "))
                };
                errs.push(k.span(), &self.key(name), format!("unknown key{hint}"));
            }
        }
    }

    pub(crate) fn str(&self, k: &str, errs: &mut Errors) -> Option<(String, Range<usize>)> {
        let v = self.get(k)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            other => {
                errs.wrong_type(v.span(), &self.key(k), "a string", other);
                None
            }
        }
    }

    pub(crate) fn int(&self, k: &str, errs: &mut Errors) -> Option<(i64, Range<usize>)> {
        let v = self.get(k)?;
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some((n, v.span())),
                Err(_) => {
                    errs.push(v.span(), &self.key(k), "integer out of range");
                    None
                }
            },
            other => {
                errs.wrong_type(v.span(), &self.key(k), "an integer", other);
                None
            }
        }
    }

    pub(crate) fn float(&self, k: &str, errs: &mut Errors) -> Option<(f64, Range<usize>)> {
        let v = self.get(k)?;
        match v.get_ref() {
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(n) => Some((n, v.span())),
                Err(_) => {
                    errs.push(v.span(), &self.key(k), "not a number");
                    None
                }
            },
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some((n as f64, v.span())),
                Err(_) => {
                    errs.push(v.span(), &self.key(k), "integer out of range");
                    None
                }
            },
            other => {
                errs.wrong_type(v.span(), &self.key(k), "a number", other);
                None
            }
        }
    }

    pub(crate) fn table(&self, k: &str, errs: &mut Errors) -> Option<Tbl<'a, 'i>> {
        let v = self.get(k)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(Tbl::new(t, &self.key(k), v.span())),
            other => {
                errs.wrong_type(v.span(), &self.key(k), "a table", other);
                None
            }
        }
    }

    /// An array of strings; each wrong element is reported.
    pub(crate) fn str_list(&self, k: &str, errs: &mut Errors) -> Option<StrList> {
        let v = self.get(k)?;
        str_list_of(v, &self.key(k), errs)
    }
}

/// Reads an array of strings from `v`.
pub(crate) fn str_list_of(
    v: &Spanned<DeValue<'_>>,
    key: &str,
    errs: &mut Errors,
) -> Option<StrList> {
    match v.get_ref() {
        DeValue::Array(a) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in a.iter().enumerate() {
                match item.get_ref() {
                    DeValue::String(s) => out.push((s.to_string(), item.span())),
                    other => {
                        ok = false;
                        errs.wrong_type(item.span(), &format!("{key}[{i}]"), "a string", other);
                    }
                }
            }
            ok.then_some((out, v.span()))
        }
        other => {
            errs.wrong_type(v.span(), key, "an array of strings", other);
            None
        }
    }
}

/// The place of the value at `path` (`["credentials", "file"]`), if the file sets it as such.
pub(crate) fn span_at(table: &DeTable<'_>, path: &[&str]) -> Option<Range<usize>> {
    let (first, rest) = path.split_first()?;
    let v = table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == *first)
        .map(|(_, v)| v)?;
    match (rest.is_empty(), v.get_ref()) {
        (true, _) => Some(v.span()),
        (false, DeValue::Table(t)) => span_at(t, rest),
        (false, _) => None,
    }
}
