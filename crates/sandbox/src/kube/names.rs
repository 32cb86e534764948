//! Object names as the API server checks them on create: most kinds take a DNS-1123
//! subdomain, Namespaces a DNS-1123 label; the messages are apimachinery's.

const SUBDOMAIN_MAX: usize = 253;
const LABEL_MAX: usize = 63;

/// Why `name` is not a valid name for a `plural` object, as the cause's message; `None`
/// when it is valid.
pub fn invalid_name(plural: &str, name: &str) -> Option<String> {
    if plural == "namespaces" {
        return invalid_label(name);
    }
    if name.len() > SUBDOMAIN_MAX {
        return Some(format!(
            "Invalid value: {name:?}: must be no more than {SUBDOMAIN_MAX} characters"
        ));
    }
    let valid = name.split('.').all(is_label);
    (!valid).then(|| {
        format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case \
             alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
             character (e.g. 'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    })
}

fn invalid_label(name: &str) -> Option<String> {
    if name.len() > LABEL_MAX {
        return Some(format!(
            "Invalid value: {name:?}: must be no more than {LABEL_MAX} characters"
        ));
    }
    (!is_label(name)).then(|| {
        format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case \
             alphanumeric characters or '-', and must start and end with an alphanumeric \
             character (e.g. 'my-name',  or '123-abc', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    })
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_label(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_and_labels() {
        assert_eq!(invalid_name("configmaps", "a.b-c.d1"), None);
        assert!(invalid_name("configmaps", "Not_Valid").is_some());
        assert!(invalid_name("configmaps", "-a").is_some());
        assert!(invalid_name("configmaps", "a..b").is_some());
        assert_eq!(invalid_name("namespaces", "team-1"), None);
        assert!(
            invalid_name("namespaces", "a.b")
                .unwrap()
                .contains("RFC 1123 label")
        );
        assert!(invalid_name("configmaps", &"a".repeat(254)).is_some());
    }
}
