//! Where each `[[certificate]]` table is in the text, so that each can be parsed and built on
//! its own and dropped before the next: toml's spanned document of a whole 10 000-certificate
//! file (its tables, the lexer's token vector, the parse events) peaked at 50 MB for 1.4 MB of
//! text. One pass of toml's lexer, whose tokens are looked at and dropped, finds the headers.
//!
//! Only a plain layout is split: the top-level keys and other tables first, then the
//! `[[certificate]]` tables, each followed only by its own sub-tables (`[certificate.x]`). For
//! anything else (another table after the certificates, `certificate` spelt as a quoted key or
//! set by a dotted key) [`layout`] says `None` and the caller parses the whole document, which
//! reads every file as TOML defines it.

use std::ops::Range;

use toml_parser::lexer::{Token, TokenKind};

/// The top of the file (everything before the first `[[certificate]]`) and each certificate's
/// text (its header to the next certificate's header or the end), as byte ranges.
#[derive(Debug, PartialEq)]
pub(super) struct Layout {
    pub(super) head: Range<usize>,
    pub(super) certificates: Vec<Range<usize>>,
}

/// How a table header relates to the certificates.
enum Header {
    /// `[[certificate]]`: a new certificate starts here.
    Certificate,
    /// `[certificate.x]` or `[[certificate.x]]`: part of the certificate before it.
    Inside,
    /// Another table.
    Other,
    /// Names `certificate` in a form this module does not follow.
    Unusual,
}

/// The layout of `text`, or `None` when it is not the plain one (see the module docs).
pub(super) fn layout(text: &str) -> Option<Layout> {
    let mut tokens = toml_parser::Source::new(text).lex();
    let mut certificates: Vec<Range<usize>> = Vec::new();
    let mut open: Option<usize> = None;
    // Brackets and braces open in a value: a `[` on a new line there is an array, not a header.
    let mut depth = 0usize;
    let mut line_start = true;
    while let Some(t) = tokens.next() {
        match t.kind() {
            TokenKind::Eof => break,
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::Newline => line_start = line_start || depth == 0,
            TokenKind::LeftSquareBracket if line_start && depth == 0 => {
                let start = t.span().start();
                let (kind, ended) = header(text, t, &mut tokens);
                match kind {
                    Header::Certificate => {
                        if let Some(s) = open.replace(start) {
                            certificates.push(s..start);
                        }
                    }
                    Header::Inside if open.is_some() => {}
                    Header::Other if open.is_none() => {}
                    _ => return None,
                }
                if !ended {
                    break;
                }
                line_start = true;
            }
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => {
                depth += 1;
                line_start = false;
            }
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.saturating_sub(1);
                line_start = false;
            }
            _ => line_start = false,
        }
    }
    let first = match open {
        Some(s) => {
            certificates.push(s..text.len());
            certificates[0].start
        }
        None => text.len(),
    };
    Some(Layout {
        head: 0..first,
        certificates,
    })
}

/// Reads a header's tokens to the end of its line (`ended`: a newline, not the end of the
/// text, came first) and says what it is, from its text without whitespace and comment.
fn header(text: &str, first: Token, tokens: &mut toml_parser::lexer::Lexer<'_>) -> (Header, bool) {
    let mut shape = String::new();
    let mut push = |t: &Token| {
        shape.push_str(text.get(t.span().start()..t.span().end()).unwrap_or(""));
    };
    push(&first);
    let mut ended = false;
    for t in tokens.by_ref() {
        match t.kind() {
            TokenKind::Newline => {
                ended = true;
                break;
            }
            TokenKind::Eof => break,
            TokenKind::Whitespace | TokenKind::Comment => {}
            _ => push(&t),
        }
    }
    let kind = if shape == "[[certificate]]" {
        Header::Certificate
    } else if shape.starts_with("[certificate.") || shape.starts_with("[[certificate.") {
        Header::Inside
    } else if shape.contains("certificate") {
        Header::Unusual
    } else {
        Header::Other
    };
    (kind, ended)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ranges(text: &str) -> Option<(String, Vec<String>)> {
        let l = layout(text)?;
        Some((
            text[l.head].to_string(),
            l.certificates
                .into_iter()
                .map(|r| text[r].to_string())
                .collect(),
        ))
    }

    #[test]
    fn splits_a_plain_file_at_each_certificate() {
        let text = "a = 1\n[defaults]\nx = [\n  [1],\n]\n\n[[certificate]]\nname = \"a\"\n\
                    [certificate.validation]\nm = \"\"\"\n[[certificate]]\n\"\"\"\n\
                    [[ certificate ]] # two\nname = \"b\"\n";
        let (head, certs) = ranges(text).unwrap();
        assert_eq!(head, "a = 1\n[defaults]\nx = [\n  [1],\n]\n\n");
        assert_eq!(
            certs,
            [
                "[[certificate]]\nname = \"a\"\n[certificate.validation]\nm = \"\"\"\n[[certificate]]\n\"\"\"\n",
                "[[ certificate ]] # two\nname = \"b\"\n",
            ]
        );
        assert_eq!(ranges("a = 1\n").unwrap(), ("a = 1\n".to_string(), vec![]));
        assert_eq!(ranges("").unwrap(), (String::new(), vec![]));
    }

    #[test]
    fn other_layouts_are_not_split() {
        for text in [
            "[[certificate]]\nname = \"a\"\n[defaults]\n",
            "[certificate.x]\n[[certificate]]\n",
            "[[\"certificate\"]]\nname = \"a\"\n",
            "[\"certificate\".validation]\n",
        ] {
            assert_eq!(layout(text), None, "{text}");
        }
    }

    /// The config (or every error, with its line:col) read a table at a time equals the one
    /// read as one document.
    fn same_as_whole(text: &str) -> bool {
        let src = Some(std::path::Path::new("t.toml"));
        let Some(split) = super::super::parse_split(text, "t.toml", src, None) else {
            return false;
        };
        let whole = super::super::parse_whole(text, "t.toml", src, None);
        match (split, whole) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(a), Err(b)) => assert_eq!(a.errors, b.errors, "{text}"),
            (a, b) => panic!("{text}\nsplit: {a:?}\nwhole: {b:?}"),
        }
        true
    }

    const HEAD: &str = "output_dir = \"/srv/live\"\n[defaults]\n\
        contact = { name = \"Ops\", phone = \"1\", email = \"o@x.com\" }\n";

    #[test]
    fn errors_and_notes_in_later_certificates_keep_their_line_and_column() {
        let cert = |name: &str, extra: &str| {
            format!(
                "[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.example.com\"]\n\
                 validation = {{ method = \"file\", webroot = \"/srv/www\" }}\n{extra}"
            )
        };
        let text = [
            HEAD.to_string(),
            cert("a", ""),
            cert("b", "key = \"dsa\"\n"),
            cert("a", "[certificate.contact]\nname = \"\"\n"),
            "[[certificate]]\nname = \"d\"\ndomains = [\"A.example.com\", \"b.example.com\"]\n\
             validation = { method = \"file\", webroot = \"www\" }\nkey = \"rsa-2048\"\n"
                .to_string(),
            cert("e", "[certificate.reload]\nargv = []\n"),
        ]
        .concat();
        let err = crate::config::parse(&text, Some(std::path::Path::new("t.toml"))).unwrap_err();
        let want = [
            "t.toml:12:7: certificate[1].key: unknown key kind",
            "t.toml:14:8: certificate[2].name: \"a\" is used by an earlier certificate",
            "t.toml:15:12: certificate[2].domains[0]: \"a.example.com\" is also in certificate",
            "t.toml:17:1: certificate[2].contact.phone: missing",
            "t.toml:17:1: certificate[2].contact.email: missing",
            "t.toml:18:8: certificate[2].contact.name: may not be empty",
            "t.toml:22:43: certificate[3].validation.webroot: must be an absolute path",
            "t.toml:29:8: certificate[4].reload.argv: empty command",
        ];
        assert_eq!(err.errors.len(), want.len(), "{:#?}", err.errors);
        for (e, w) in err.errors.iter().zip(want) {
            assert!(e.starts_with(w), "{e:?} does not start with {w:?}");
        }
        assert!(same_as_whole(&text));
        // Notes: a name spelt otherwise, one name with an ECDSA and an RSA key.
        let ok = text.replace("key = \"dsa\"\n", "").replace(
            "[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\n\
             validation = { method = \"file\", webroot = \"/srv/www\" }\n[certificate.contact]\nname = \"\"\n",
            "",
        );
        let ok = ok
            .replace("\"www\"", "\"/srv/www\"")
            .replace("argv = []", "argv = [\"true\"]");
        let c = crate::config::parse(&ok, Some(std::path::Path::new("t.toml"))).unwrap();
        assert_eq!(c.certificates.len(), 4);
        let want = [
            "t.toml:13:8: certificate[2].name: note: \"a\" (ECDSA) and \"d\" (RSA) both cover",
            "t.toml:13:8: certificate[2].name: note: \"b\" (ECDSA) and \"d\" (RSA) both cover",
            "t.toml:14:12: certificate[2].domains[0]: note: \"A.example.com\" is ordered as",
        ];
        assert_eq!(c.notes.len(), want.len(), "{:#?}", c.notes);
        for (n, w) in c.notes.iter().zip(want) {
            assert!(n.starts_with(w), "{n:?} does not start with {w:?}");
        }
        assert!(same_as_whole(&ok));
    }

    #[test]
    fn the_shipped_configs_read_the_same_a_table_at_a_time() {
        for text in [
            include_str!("../../config/example.toml"),
            include_str!("../../config/minimal.toml"),
        ] {
            assert!(same_as_whole(text));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Lines of the example dropped, repeated or cut short: whenever the text is read a
        /// table at a time, the outcome is the whole document's.
        #[test]
        fn a_mangled_example_reads_the_same_a_table_at_a_time(
            edits in proptest::collection::vec((0usize..200, 0u8..3, 0usize..40), 1..6)
        ) {
            let mut lines: Vec<String> = include_str!("../../config/example.toml")
                .lines()
                .map(String::from)
                .collect();
            for (at, what, cut) in edits {
                let at = at % lines.len();
                match what {
                    0 => { lines.remove(at); }
                    1 => { let l = lines[at].clone(); lines.insert(at, l); }
                    _ => {
                        let l = &mut lines[at];
                        let mut n = cut.min(l.len());
                        while !l.is_char_boundary(n) { n -= 1; }
                        l.truncate(n);
                    }
                }
                if lines.is_empty() { break; }
            }
            same_as_whole(&(lines.join("\n") + "\n"));
        }
    }
}
