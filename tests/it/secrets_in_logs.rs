//! Secrets never reach the logs: a full failover and revert drill runs with every log at
//! debug level, and neither the S3 secret access key, nor the access key id, nor the webhook
//! token appears in anything the process wrote (plain or base64, as Secrets carry them).

use std::process::Command;

use base64::Engine as _;

/// Every way a secret could appear: as is, and base64-encoded (a Secret's `data`).
fn forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![secret.to_owned(), b64.encode(secret)]
}

/// The secrets (by name) that `log` contains in any form.
fn leaks<'a>(log: &str, secrets: &[(&'a str, &str)]) -> Vec<&'a str> {
    secrets
        .iter()
        .filter(|(_, secret)| forms(secret).iter().any(|f| log.contains(f.as_str())))
        .map(|(name, _)| *name)
        .collect()
}

#[test]
fn a_full_drill_at_debug_level_logs_no_secret() {
    // Fresh, distinctive values: nothing else in the logs can contain them by chance.
    let nonce = || uuid::Uuid::new_v4().simple().to_string();
    let access_key_id = format!("AKIALEAKCHECK{}", &nonce()[..12]).to_uppercase();
    let secret_access_key = format!("leakcheck-secret-{}", nonce());
    let webhook_token = format!("leakcheck-token-{}", nonce());
    let secrets = [
        ("S3 access key id", access_key_id.as_str()),
        ("S3 secret access key", secret_access_key.as_str()),
        ("webhook token", webhook_token.as_str()),
    ];
    for (name, secret) in &secrets {
        assert!(secret.len() >= 16, "{name} is a real secret");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["sandbox", "--drill"])
        .env("BACKSTOP_LOG", "debug")
        .env("RUST_LOG", "debug")
        .env("BACKSTOP_SANDBOX_S3_ACCESS_KEY_ID", &access_key_id)
        .env("BACKSTOP_SANDBOX_S3_SECRET_ACCESS_KEY", &secret_access_key)
        .env("BACKSTOP_SANDBOX_WEBHOOK_TOKEN", &webhook_token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the drill failed:\n{stdout}\n{}",
        stderr.lines().rev().take(50).collect::<Vec<_>>().join("\n")
    );
    let log = format!("{stdout}\n{stderr}");

    // The drill ran end to end, on the secrets given here, with debug logging really on.
    assert!(stdout.contains("drill passed"), "{stdout}");
    assert!(stderr.contains("drill: S3 keys given by the caller"));
    assert!(stderr.contains("drill: webhook token given by the caller"));
    let debug_lines = stderr.lines().filter(|l| l.contains("DEBUG")).count();
    assert!(
        debug_lines >= 100,
        "only {debug_lines} debug lines: is debug logging on?"
    );
    // The check itself finds a secret when one is there.
    assert_eq!(
        leaks(&format!("{log} x-token={webhook_token}"), &secrets),
        ["webhook token"]
    );

    let found = leaks(&log, &secrets);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            secrets
                .iter()
                .any(|(_, s)| forms(s).iter().any(|f| l.contains(f.as_str())))
        })
        .take(10)
        .collect();
    assert!(
        found.is_empty(),
        "secrets in the logs: {found:?}; e.g.\n{}",
        lines.join("\n")
    );
}
