//! Domain name checks: IDNA to A-labels, LDH labels, lengths, wildcard placement.

/// Normalises one configured name to lower-case A-labels, or says why it is not acceptable.
/// A wildcard is allowed only as the whole leftmost label (`*.example.com`).
pub fn normalize_domain(input: &str) -> Result<String, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty domain name".into());
    }
    if s != input {
        return Err("domain name has surrounding spaces".into());
    }
    if s.ends_with('.') {
        return Err("write the name without a trailing dot".into());
    }
    let (wild, rest) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if rest.contains('*') {
        return Err("a wildcard may only be the whole leftmost label, as in *.example.com".into());
    }
    let ascii = idna::domain_to_ascii(rest)
        .map_err(|_| format!("{rest:?} is not a valid internationalised domain name"))?;
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "{ascii:?} has a single label; a certificate needs a name like example.com"
        ));
    }
    for label in &labels {
        check_label(label)?;
    }
    let full = if wild { format!("*.{ascii}") } else { ascii };
    if full.len() > 253 {
        return Err(format!(
            "name is {} characters long, at most 253 are allowed",
            full.len()
        ));
    }
    Ok(full)
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label (two dots in a row?)".into());
    }
    if label.len() > 63 {
        return Err(format!(
            "label {label:?} is {} characters long, at most 63 are allowed",
            label.len()
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "label {label:?} contains {c:?}; only letters, digits and '-' are allowed"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "label {label:?} starts or ends with '-', which is not allowed"
        ));
    }
    Ok(())
}

/// Whether `name` is safe as a directory name under the output directory.
pub fn safe_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.starts_with('.') {
        return Err("a name may not start with '.'".into());
    }
    if name.len() > 64 {
        return Err("a name may be at most 64 characters long".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed; use letters, digits, '.', '_' and '-' only"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn good_names_normalise() {
        assert_eq!(normalize_domain("Example.COM").unwrap(), "example.com");
        assert_eq!(normalize_domain("*.example.com").unwrap(), "*.example.com");
        assert_eq!(
            normalize_domain("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize_domain("a-b.c1.io").unwrap(), "a-b.c1.io");
    }

    #[test]
    fn bad_names_refused() {
        for bad in [
            "",
            "com",
            "example.com.",
            "*example.com",
            "www.*.example.com",
            "*.*.example.com",
            "-a.example.com",
            "a-.example.com",
            "a_b.example.com",
            "a..example.com",
            " example.com",
            "exa mple.com",
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(normalize_domain(&long).unwrap_err().contains("63"));
        let total = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(normalize_domain(&total).unwrap_err().contains("253"));
    }

    #[test]
    fn dir_names() {
        assert!(safe_name("www.example-1_x").is_ok());
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "ü"] {
            assert!(safe_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
