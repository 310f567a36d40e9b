//! Broken configurations: each must be refused with the exact line:col, the key and a reason.
//! Also: the shipped example and minimal configs parse, and all errors come out at once.
#![allow(clippy::unwrap_used)]

use cas_certd::config::{self, KeyKind, RenewBefore, Validation};

use crate::support::repo_root;

/// Appended to every case (after its own lines), so that a contact exists.
const BASE: &str = "[defaults]\ncontact = { name = \"Ops\", phone = \"1\", email = \"o@x.com\" }\n";

/// (config text after BASE, expected `line:col: key:` prefix, a fragment of the reason)
const CASES: &[(&str, &str, &str)] = &[
    // 1 syntax
    ("state_dir = \n", "1:13: syntax:", "invalid TOML"),
    // 2 unknown root key
    ("stat_dir = \"/x\"\n", "1:1: stat_dir:", "unknown key"),
    // 3 wrong type
    ("poll_min = 10\n", "1:12: poll_min:", "expected a string, found integer"),
    // 4 bad duration
    ("poll_max = \"ten minutes\"\n", "1:12: poll_max:", "not a duration"),
    // 5 poll_min > poll_max
    ("poll_min = \"1h\"\npoll_max = \"1m\"\n", "1:12: poll_min:", "longer than poll_max"),
    // 6 cron
    ("check_schedule = \"*/10 * * *\"\n", "1:18: check_schedule:", "cron"),
    // 7 log format
    ("log_format = \"xml\"\n", "1:14: log_format:", "\"text\" or \"json\""),
    // 8 http endpoint not loopback
    ("[cas]\nendpoint = \"http://cas.aliyuncs.com\"\n", "2:12: cas.endpoint:", "loopback"),
    // 9 not a URL
    ("[alidns]\nendpoint = \"alidns\"\n", "2:12: alidns.endpoint:", "not a URL"),
    // 10 signature
    ("[cas]\nsignature = \"v2\"\n", "2:13: cas.signature:", "\"v1\" or \"v3\""),
    // 11 unknown key in [cas]
    ("[cas]\nendpont = \"https://x.example\"\n", "2:1: cas.endpont:", "unknown key"),
    // 12 concurrency range
    ("concurrency = 0\n", "1:15: concurrency:", "between 1 and 256"),
    // 13 relative path
    ("output_dir = \"live\"\n", "1:14: output_dir:", "absolute"),
    // 14 unknown key kind in defaults
    (
        "[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\nkey = \"dsa\"\n",
        "5:7: certificate[0].key:",
        "unknown key kind \"dsa\"",
    ),
    // 15 renew_before out of range
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\nrenew_before = \"3/2\"\n",
     "5:16: certificate[0].renew_before:", "between 0 and 1"),
    // 16 duplicate certificate name
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\n[[certificate]]\nname = \"a\"\ndomains = [\"b.example.com\"]\nvalidation = { method = \"alidns\" }\n",
     "6:8: certificate[1].name:", "unique"),
    // 17 unsafe name
    ("[[certificate]]\nname = \"..\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\n",
     "2:8: certificate[0].name:", "start with '.'"),
    // 18 single-label domain
    ("[[certificate]]\nname = \"a\"\ndomains = [\"localhost\"]\nvalidation = { method = \"alidns\" }\n",
     "3:12: certificate[0].domains[0]:", "single label"),
    // 19 wildcard not leftmost
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\", \"www.*.example.com\"]\nvalidation = { method = \"alidns\" }\n",
     "3:29: certificate[0].domains[1]:", "leftmost label"),
    // 20 mixing wildcard and plain
    ("[[certificate]]\nname = \"a\"\ndomains = [\"*.example.com\", \"example.com\"]\nvalidation = { method = \"alidns\" }\n",
     "3:11: certificate[0].domains:", "do not mix"),
    // 21 FILE for wildcard
    ("[[certificate]]\nname = \"a\"\ndomains = [\"*.example.com\"]\nvalidation = { method = \"file\", webroot = \"/w\" }\n",
     "4:25: certificate[0].validation.method:", "cannot be validated by file"),
    // 22 too many domains
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.ex.com\",\"b.ex.com\",\"c.ex.com\",\"d.ex.com\",\"e.ex.com\",\"f.ex.com\"]\nvalidation = { method = \"alidns\" }\n",
     "3:11: certificate[0].domains:", "at most 5"),
    // 23 duplicate domain (case-insensitive)
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\", \"A.Example.com\"]\nvalidation = { method = \"alidns\" }\n",
     "3:29: certificate[0].domains[1]:", "listed twice"),
    // 24 label too long
    ("[[certificate]]\nname = \"a\"\ndomains = [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com\"]\nvalidation = { method = \"alidns\" }\n",
     "3:12: certificate[0].domains[0]:", "at most 63"),
    // 25 hyphen at label edge
    ("[[certificate]]\nname = \"a\"\ndomains = [\"-a.example.com\"]\nvalidation = { method = \"alidns\" }\n",
     "3:12: certificate[0].domains[0]:", "starts or ends with '-'"),
    // 26 unknown validation method
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"http\" }\n",
     "4:25: certificate[0].validation.method:", "unknown method"),
    // 27 empty reload argv
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\nreload = []\n",
     "5:10: certificate[0].reload:", "empty command"),
    // 28 unknown key in certificate
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\ndomain = \"b\"\n",
     "5:1: certificate[0].domain:", "unknown key"),
    // 29 unknown key inside validation
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"file\", webroot = \"/w\", zone = \"x\" }\n",
     "4:49: certificate[0].validation.zone:", "unknown key"),
    // 30 manual type
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"manual\", type = \"http\" }\n",
     "4:42: certificate[0].validation.type:", "\"dns\" or \"file\""),
    // 31 key mode readable by others
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\nkey_mode = \"0644\"\n", "5:12: certificate[0].key_mode:", "readable or writable by others"),
    // 32 missing validation
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\n",
     "1:1: certificate[0].validation:", "missing"),
    // 33 email
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\ncontact = { name = \"a\", phone = \"1\", email = \"nope\" }\n",
     "5:46: certificate[0].contact.email:", "e-mail"),
    // 34 command validation with empty argv
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"command\", command = [] }\n",
     "4:46: certificate[0].validation.command:", "empty command"),
    // 35 metrics address
    ("[metrics]\nlisten = \"localhost\"\n", "2:10: metrics.listen:", "not an address"),
    // 36 underscore in a label
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a_b.example.com\"]\nvalidation = { method = \"alidns\" }\n",
     "3:12: certificate[0].domains[0]:", "only letters, digits and '-'"),
    // 37 reload table with bad timeout
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\nreload = { argv = [\"true\"], timeout = \"soon\" }\n",
     "5:39: certificate[0].reload.timeout:", "not a duration"),
    // 38 a validation deadline of zero
    ("[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\nvalidation_timeout = \"0s\"\n",
     "5:22: certificate[0].validation_timeout:", "must be longer than zero"),
    // 39 a negative quota warning
    ("quota_warn = -1\n", "1:14: quota_warn:", "0 or more"),
];

fn check_case(i: usize, body: &str, want: &str, reason: &str) {
    let text = format!("{body}{BASE}");
    let err = config::parse(&text, Some(std::path::Path::new("t.toml")))
        .expect_err(&format!("case {} was accepted:\n{text}", i + 1));
    let want_full = format!("t.toml:{want}");
    let hit = err
        .errors
        .iter()
        .find(|e| e.starts_with(&want_full))
        .unwrap_or_else(|| {
            panic!(
                "case {}: no error starting {want_full:?} in {:#?}",
                i + 1,
                err.errors
            )
        });
    assert!(
        hit.contains(reason),
        "case {}: {hit:?} lacks {reason:?}",
        i + 1
    );
}

#[test]
fn corpus_of_broken_configs_reports_place_key_and_reason() {
    for (i, (body, want, reason)) in CASES.iter().enumerate() {
        check_case(i, body, want, reason);
    }
    assert!(CASES.len() >= 20);
}

#[test]
fn unknown_key_kind_in_defaults() {
    let text =
        "[defaults]\nkey = \"dsa\"\ncontact = { name = \"O\", phone = \"1\", email = \"o@x\" }\n";
    let err = config::parse(text, None).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{:?}", err.errors);
    assert!(err.errors[0].starts_with("<config>:2:7: defaults.key: unknown key kind \"dsa\""));
}

#[test]
fn missing_contact_is_reported_on_the_certificate() {
    let text = "[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\n";
    let err = config::parse(text, None).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{:?}", err.errors);
    assert!(
        err.errors[0].starts_with("<config>:1:1: certificate[0].contact: missing"),
        "{:?}",
        err.errors
    );
}

#[test]
fn every_error_is_reported_at_once_in_file_order() {
    let text = format!(
        "poll_min = \"x\"\nbogus = 1\n[cas]\nsignature = \"v9\"\n[[certificate]]\nname = \"a/b\"\ndomains = [\"ex ample.com\"]\nvalidation = {{ method = \"nope\" }}\n{BASE}"
    );
    let err = config::parse(&text, None).unwrap_err();
    let keys: Vec<&str> = err
        .errors
        .iter()
        .map(|e| e.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "poll_min",
            "bogus",
            "cas.signature",
            "certificate[0].name",
            "certificate[0].domains[0]",
            "certificate[0].validation.method"
        ],
        "{:#?}",
        err.errors
    );
    // Lines are increasing.
    let lines: Vec<usize> = err
        .errors
        .iter()
        .map(|e| e.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn shipped_example_and_minimal_configs_parse() {
    let ex =
        config::load(&repo_root().join("config/example.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ex.certificates.len(), 4);
    assert_eq!(ex.check_schedule, "0 */10 * * * *");
    assert_eq!(ex.api.qps_overrides.len(), 2);
    let wild = &ex.certificates[1];
    assert_eq!(wild.domains, ["*.example.com"]);
    assert_eq!(wild.key, KeyKind::EcdsaP384);
    assert_eq!(
        wild.validation,
        Validation::Alidns {
            zone: Some("example.com".into())
        }
    );
    assert_eq!(
        wild.renew_before,
        RenewBefore::Duration(std::time::Duration::from_secs(30 * 86400))
    );
    assert_eq!(
        ex.certificates[3].reload.as_ref().unwrap().argv,
        ["/usr/local/bin/restart-intranet"]
    );

    let min =
        config::load(&repo_root().join("config/minimal.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(min.state_dir, std::path::Path::new("/var/lib/cas-certd"));
    assert_eq!(min.output_dir, std::path::Path::new("/etc/cas-certd/live"));
    assert_eq!(
        min.control_socket,
        std::path::Path::new("/var/lib/cas-certd/control.sock")
    );
    assert_eq!(min.poll_min, std::time::Duration::from_secs(10));
    assert_eq!(min.poll_max, std::time::Duration::from_secs(600));
    assert_eq!(min.concurrency, 8);
    assert_eq!(min.quota_warn, 3);
    let c = &min.certificates[0];
    // The 2024 API page's default product (the 2022 reference named symantec-free-1-free).
    assert_eq!(c.product_code, "digicert-free-1-free");
    assert_eq!(c.key, KeyKind::EcdsaP256);
    assert_eq!(c.renew_before, RenewBefore::Fraction(1.0 / 3.0));
    assert_eq!(c.files.key_mode, 0o600);
    assert_eq!(c.files.cert_mode, 0o644);
    assert_eq!(c.keep_versions, 3);
    assert_eq!(
        c.reload.as_ref().unwrap().timeout,
        std::time::Duration::from_secs(60)
    );
}

#[test]
fn validation_timeout_defaults_to_a_day_and_is_set_in_defaults_or_per_certificate() {
    let cert = |name: &str, extra: &str| {
        format!("[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.example.com\"]\nvalidation = {{ method = \"alidns\" }}\n{extra}")
    };
    let day = std::time::Duration::from_secs(24 * 3600);
    let c = config::parse(&format!("{BASE}{}", cert("a", "")), None).unwrap();
    assert_eq!(c.certificates[0].validation_timeout, day);
    let text = format!(
        "[defaults]\nvalidation_timeout = \"3d\"\ncontact = {{ name = \"O\", phone = \"1\", email = \"o@x\" }}\n{}{}",
        cert("a", ""),
        cert("b", "validation_timeout = \"20s\"\n")
    );
    let c = config::parse(&text, None).unwrap();
    assert_eq!(c.certificates[0].validation_timeout, 3 * day);
    assert_eq!(
        c.certificates[1].validation_timeout,
        std::time::Duration::from_secs(20)
    );
    let err = config::parse(&text.replace("\"3d\"", "\"a day\""), None).unwrap_err();
    assert!(
        err.errors[0]
            .starts_with("<config>:2:22: defaults.validation_timeout: \"a day\" is not a duration"),
        "{:?}",
        err.errors
    );
}

#[test]
fn expiry_warn_defaults_to_two_weeks_is_set_in_defaults_or_per_certificate_and_zero_is_off() {
    let cert = |name: &str, extra: &str| {
        format!("[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.example.com\"]\nvalidation = {{ method = \"alidns\" }}\n{extra}")
    };
    let day = std::time::Duration::from_secs(24 * 3600);
    let c = config::parse(&format!("{BASE}{}", cert("a", "")), None).unwrap();
    assert_eq!(c.certificates[0].expiry_warn, 14 * day);
    let text = format!(
        "[defaults]\nexpiry_warn = \"30d\"\ncontact = {{ name = \"O\", phone = \"1\", email = \"o@x\" }}\n{}{}",
        cert("a", ""),
        cert("b", "expiry_warn = \"0s\"\n")
    );
    let c = config::parse(&text, None).unwrap();
    assert_eq!(c.certificates[0].expiry_warn, 30 * day);
    assert!(c.certificates[1].expiry_warn.is_zero());
    let err = config::parse(&text.replace("\"30d\"", "\"soon\""), None).unwrap_err();
    assert!(
        err.errors[0]
            .starts_with("<config>:2:15: defaults.expiry_warn: \"soon\" is not a duration"),
        "{:?}",
        err.errors
    );
}

#[test]
fn group_makes_key_0640_and_diff_by_name() {
    let a = "[defaults]\ngroup = \"www-data\"\ncontact = { name = \"O\", phone = \"1\", email = \"o@x\" }\n[[certificate]]\nname = \"a\"\ndomains = [\"a.example.com\"]\nvalidation = { method = \"alidns\" }\n[[certificate]]\nname = \"b\"\ndomains = [\"b.example.com\"]\nvalidation = { method = \"alidns\" }\n".to_string();
    let old = config::parse(&a, None).unwrap();
    assert_eq!(old.certificates[0].files.key_mode, 0o640);
    let b = a
        .replace("b.example.com", "bb.example.com")
        .replace("name = \"a\"", "name = \"c\"");
    let new = config::parse(&b, None).unwrap();
    let d = config::diff(&old, &new);
    assert_eq!(d.added, ["c"]);
    assert_eq!(d.changed, ["b"]);
    assert_eq!(d.removed, ["a"]);
    assert_eq!(config::diff(&old, &old), config::ConfigDiff::default());
}

#[test]
fn idn_domains_become_a_labels() {
    let t = format!("[[certificate]]\nname = \"idn\"\ndomains = [\"Bücher.Example\"]\nvalidation = {{ method = \"alidns\" }}\n{BASE}");
    let c = config::parse(&t, None).unwrap();
    assert_eq!(c.certificates[0].domains, ["xn--bcher-kva.example"]);
}

/// Writes `text` as `config.toml` in a fresh temp dir (kept alive by the returned guard).
fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn a_syntax_error_is_reported_once_where_the_parser_lost_its_way() {
    // Issue 16 item 8: a missing `]` on line 3 gave 15 errors, the first on line 5.
    let cases = [
        // An unclosed table header: the parser is lost on line 3 itself.
        (
            "state_dir = \"/var/lib/cas-certd\"\noutput_dir = \"/etc/cas-certd/live\"\n[cas\nendpoint = \"https://cas.aliyuncs.com\"\n[alidns]\nendpoint = \"https://alidns.aliyuncs.com\"\n[metrics]\nlisten = \"127.0.0.1:9480\"\n",
            "3:",
        ),
        // An unclosed array on line 3: lost where the next key starts instead of `,` or `]`.
        (
            "[[certificate]]\nname = \"www\"\ndomains = [\"www.example.com\"\nvalidation = { method = \"alidns\" }\n[[certificate]]\nname = \"api\"\ndomains = [\"api.example.com\"]\nvalidation = { method = \"alidns\" }\n",
            "4:1:",
        ),
    ];
    for (text, at) in cases {
        let (_dir, path) = config_file(&format!("{text}{BASE}"));
        let out = crate::config_safety::check_offline(&path);
        let err = crate::config_safety::stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(err.lines().count(), 1, "not one error:\n{err}");
        let want = format!("{}:{at}", path.display());
        assert!(err.starts_with(&want), "{err:?} does not start {want:?}");
        assert!(err.contains("invalid TOML"), "{err}");
    }
}

const TWO_CERTS: &str = "[[certificate]]\nname = \"www\"\ndomains = [\"example.com\", \"www.example.com\"]\nvalidation = { method = \"alidns\" }\n[[certificate]]\nname = \"www2\"\ndomains = [\"WWW.Example.com\"]\nvalidation = { method = \"alidns\" }\n";

#[test]
fn the_same_name_twice_with_the_same_key_type_is_refused() {
    // Issue 16 item 9: both would be ordered and paid for; case does not make it another name.
    let (_dir, path) = config_file(&format!("{TWO_CERTS}{BASE}"));
    let out = crate::config_safety::check_offline(&path);
    let err = crate::config_safety::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let want = format!("{}:7:12: certificate[1].domains[0]:", path.display());
    assert!(err.starts_with(&want), "{err:?} does not start {want:?}");
    assert!(
        err.contains("\"www.example.com\"") && err.contains("\"www\"") && err.contains("twice"),
        "{err}"
    );
    // P-384 is still ECDSA: a web server serves one ECDSA and one RSA certificate, not two ECDSA.
    let t = TWO_CERTS.replace(
        "name = \"www2\"\n",
        "name = \"www2\"\nkey = \"ecdsa-p384\"\n",
    );
    let (_dir, path) = config_file(&format!("{t}{BASE}"));
    assert_eq!(
        crate::config_safety::check_offline(&path).status.code(),
        Some(3)
    );
}

#[test]
fn the_same_name_with_ecdsa_and_rsa_is_fine_and_said_once() {
    let t = TWO_CERTS.replace("name = \"www2\"\n", "name = \"www2\"\nkey = \"rsa-2048\"\n");
    let (_dir, path) = config_file(&format!("{t}{BASE}"));
    let out = crate::config_safety::check_offline(&path);
    assert!(out.status.success(), "{out:?}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        crate::config_safety::stderr(&out)
    );
    let side: Vec<&str> = all.lines().filter(|l| l.contains("side by side")).collect();
    assert_eq!(side.len(), 1, "{all}");
    assert!(
        side[0].contains("www.example.com") && side[0].contains("ECDSA") && side[0].contains("RSA"),
        "{all}"
    );
    // The upper-case name is lowered, with a note at its place.
    let lowered: Vec<&str> = all.lines().filter(|l| l.contains("lower")).collect();
    assert_eq!(lowered.len(), 1, "{all}");
    assert!(
        lowered[0].contains(":8:12: certificate[1].domains[0]:")
            && lowered[0].contains("\"WWW.Example.com\"")
            && lowered[0].contains("\"www.example.com\""),
        "{all}"
    );
    // A wildcard is not the names it covers: *.example.com beside www.example.com is fine.
    let t = TWO_CERTS.replace("[\"WWW.Example.com\"]", "[\"*.example.com\"]");
    let (_dir, path) = config_file(&format!("{t}{BASE}"));
    let out = crate::config_safety::check_offline(&path);
    assert!(out.status.success(), "{out:?}");
}
