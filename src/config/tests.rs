use super::*;
use std::collections::HashMap;
use std::ffi::OsString;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let m: HashMap<String, OsString> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
    move |k| m.get(k).cloned()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("c.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn defaults() {
    let d = tempfile::tempdir().unwrap();
    let flags = Flags {
        root: Some(d.path().join("none")),
        ..Flags::default()
    };
    let s = Settings::load_with_env(&flags, env(&[])).unwrap();
    assert_eq!(s.db, d.path().join("none/ecertd.db"));
    assert_eq!(s.max_file_bytes, 64 << 20);
    assert!(s.lookahead);
    assert!(s.config_file.is_none());
}

#[test]
fn lookahead_is_a_boolean_in_file_and_environment() {
    let d = tempfile::tempdir().unwrap();
    let flags = Flags {
        config: Some(write(d.path(), "lookahead = false\n")),
        ..Flags::default()
    };
    assert!(!Settings::load_with_env(&flags, env(&[])).unwrap().lookahead);
    let on = Settings::load_with_env(&flags, env(&[("ECERTD_LOOKAHEAD", "true")])).unwrap();
    assert!(on.lookahead, "the environment wins over the file");
    let e = Settings::load_with_env(&Flags::default(), env(&[("ECERTD_LOOKAHEAD", "1")])).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.message.as_str()),
        ("lookahead", "\"1\" is not true or false")
    );
    let flags = Flags {
        config: Some(write(d.path(), "lookahead = \"no\"\n")),
        ..Flags::default()
    };
    let e = Settings::load_with_env(&flags, env(&[])).unwrap_err();
    assert_eq!(e.message, "expected true or false, found string");
}

#[test]
fn layers_later_wins() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "root = \"r\"\npoll_interval_ms = 500\nmax_connections = 3\nlisten = \"127.0.0.1:1\"\n",
    );
    let flags = Flags {
        config: Some(p.clone()),
        listen: Some("127.0.0.1:3".into()),
        ..Flags::default()
    };
    let s = Settings::load_with_env(
        &flags,
        env(&[("ECERTD_POLL_INTERVAL_MS", "250"), ("ECERTD_LISTEN", "127.0.0.1:2")]),
    )
    .unwrap();
    assert_eq!(s.root, d.path().join("r"));
    assert_eq!(s.db, d.path().join("r/ecertd.db"));
    assert_eq!(s.poll_interval, Duration::from_millis(250));
    assert_eq!(s.max_connections, 3);
    assert_eq!(s.listen, Some("127.0.0.1:3".parse().unwrap()));
    assert_eq!(s.config_file, Some(p));
}

#[test]
fn errors_name_file_and_key() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "max_file_bytes = \"big\"\n");
    let flags = Flags {
        config: Some(p.clone()),
        ..Flags::default()
    };
    let e = Settings::load_with_env(&flags, env(&[])).unwrap_err();
    assert_eq!(e.key, "max_file_bytes");
    assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    let p = write(d.path(), "colour = 1\n");
    let e = Settings::load_with_env(
        &Flags {
            config: Some(p),
            ..Flags::default()
        },
        env(&[]),
    )
    .unwrap_err();
    assert_eq!(e.key, "colour");
    let e = Settings::load_with_env(&Flags::default(), env(&[("ECERTD_LOG_FORMAT", "xml")])).unwrap_err();
    assert_eq!(e.source, "environment variable ECERTD_LOG_FORMAT");
    let p = write(d.path(), "x = [\n");
    let e = Settings::load_with_env(
        &Flags {
            config: Some(p),
            ..Flags::default()
        },
        env(&[]),
    )
    .unwrap_err();
    assert!(e.message.contains("not valid TOML"), "{e}");
}

#[test]
fn root_file_may_not_move_root() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("ecertd.toml"), "root = \"/elsewhere\"\n").unwrap();
    let flags = Flags {
        root: Some(d.path().to_path_buf()),
        ..Flags::default()
    };
    let e = Settings::load_with_env(&flags, env(&[])).unwrap_err();
    assert_eq!(e.key, "root");
    std::fs::write(d.path().join("ecertd.toml"), "db = \"x.db\"\n").unwrap();
    let s = Settings::load_with_env(&flags, env(&[])).unwrap();
    assert_eq!(s.db, d.path().join("x.db"));
}
