use std::collections::{BTreeSet, HashMap};

use clap::{Command, CommandFactory, FromArgMatches, Parser};

use super::*;

/// `strata serve` flags parsed as on the command line.
fn flags(argv: &[&str]) -> ServeArgs {
    let command = ServeArgs::augment_args(Command::new("serve").no_binary_name(true));
    ServeArgs::from_arg_matches(&command.try_get_matches_from(argv).unwrap()).unwrap()
}

/// Resolves without looking at the process environment.
fn resolve(args: &ServeArgs) -> Result<ServeConfig> {
    ServeConfig::resolve_with(args, |_| None)
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("strata.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name)
}

#[test]
fn the_packaged_config_file_parses() {
    let path = repo_file("packaging/strata.toml");
    let c = resolve(&flags(&["--config", path.to_str().unwrap()])).unwrap();
    assert_eq!(c.broker.data_dir, PathBuf::from("/var/lib/strata"));
    assert_eq!(c.kafka_max_connections, 10_000);
    assert_eq!(c.mqtt.max_connections, 100_000);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
}

#[test]
fn flags_override_the_file_which_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "kafka-addr = \"127.0.0.1:1000\"\nadmin-addr = \"127.0.0.1:2000\"\nnum-partitions = 3\n",
    );
    let args = flags(&[
        "--config",
        path.to_str().unwrap(),
        "--kafka-addr",
        "127.0.0.1:0",
    ]);
    let c = resolve(&args).unwrap();
    assert_eq!(c.kafka_addr, "127.0.0.1:0");
    assert_eq!(c.admin_addr, "127.0.0.1:2000");
    assert_eq!(c.broker.num_partitions, 3);
    assert_eq!(c.broker.data_dir, PathBuf::from("./data"));
    let bound: SocketAddr = "0.0.0.0:4321".parse().unwrap();
    assert_eq!(c.advertised(bound).unwrap(), ("localhost".into(), 4321));
}

#[test]
fn unknown_keys_and_bad_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "kafka-adress = \"x\"\n");
    assert!(resolve(&flags(&["--config", path.to_str().unwrap()])).is_err());
    let path = write(&dir, "[mqtt]\nmax-connection = 1\n");
    assert!(resolve(&flags(&["--config", path.to_str().unwrap()])).is_err());
    assert!(resolve(&flags(&["--default-durability", "sometimes"])).is_err());
}

#[test]
fn mqtt_settings_from_file_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "[mqtt]\nws-addr = \"127.0.0.1:8083\"\nauth = \"users.toml\"\nreceive-maximum = 10\n\n[[mqtt.map]]\nfilter = \"sensors/#\"\ntopic = \"sensors\"\n",
    );
    let args = flags(&[
        "--config",
        path.to_str().unwrap(),
        "--mqtt-addr",
        "off",
        "--mqtt-map",
        "alerts/+=alerts",
    ]);
    let c = resolve(&args).unwrap();
    assert_eq!(c.mqtt.addr, None);
    assert_eq!(c.mqtt.ws_addr.as_deref(), Some("127.0.0.1:8083"));
    assert_eq!(c.mqtt.auth, Some(PathBuf::from("users.toml")));
    assert_eq!(c.mqtt.config.receive_maximum, 10);
    let rules: Vec<String> = c.mqtt.config.map.iter().map(|r| r.to_string()).collect();
    assert_eq!(rules, ["sensors/#=sensors", "alerts/+=alerts"]);
    let c = resolve(&ServeArgs::default()).unwrap();
    assert_eq!(c.mqtt.addr.as_deref(), Some("0.0.0.0:1883"));
    assert_eq!(c.mqtt.ws_addr, None);
}

#[test]
fn the_environment_sits_between_the_file_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "kafka-addr = \"127.0.0.1:1000\"\nadmin-addr = \"127.0.0.1:2000\"\nnum-partitions = 3\n\
         [mqtt]\nmax-connections = 7\nws-addr = \"127.0.0.1:8083\"\n\
         [[mqtt.map]]\nfilter = \"a/#\"\ntopic = \"a\"\n",
    );
    let env: HashMap<String, String> = [
        ("STRATA_CONFIG", path.to_str().unwrap()),
        ("STRATA_KAFKA_ADDR", "127.0.0.1:3000"),
        ("STRATA_ADMIN_ADDR", "127.0.0.1:4000"),
        ("STRATA_AUTO_CREATE_TOPICS", "false"),
        ("STRATA_MQTT_WS_ADDR", "off"),
        ("STRATA_MQTT_MAP", "b,c/#=bc,d/+=d"),
        ("STRATA_MQTT_MAX_CONNECTIONS", "8"),
        ("STRATA_MYSQL_MAX_CONNECTIONS", "3"),
        ("STRATA_DATA_DIR", ""),
        ("STRATA_BIN", "not a setting"),
    ]
    .into_iter()
    // A build without the mysql engine refuses a MySQL URL (tested with the edge binary).
    .chain(cfg!(feature = "mysql").then_some(("STRATA_MYSQL_URL", "mysql://s@127.0.0.1/s")))
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let args = flags(&["--admin-addr", "127.0.0.1:5000", "--mqtt-map", "e=e"]);
    let c = ServeConfig::resolve_with(&args, |k| env.get(k).cloned()).unwrap();
    assert_eq!(c.broker.num_partitions, 3, "file over defaults");
    assert_eq!(c.kafka_addr, "127.0.0.1:3000", "environment over file");
    assert_eq!(c.admin_addr, "127.0.0.1:5000", "flags over environment");
    assert!(!c.broker.auto_create_topics);
    assert_eq!(
        c.mqtt.ws_addr, None,
        "off in the environment over the file's listener"
    );
    assert_eq!(c.mqtt.max_connections, 8);
    assert_eq!(
        c.broker.data_dir,
        PathBuf::from("./data"),
        "an empty variable is unset"
    );
    #[cfg(feature = "mysql")]
    assert_eq!(c.broker.mysql.as_ref().map(|m| m.max_connections), Some(3));
    let rules: Vec<String> = c.mqtt.config.map.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rules,
        ["a/#=a", "b,c/#=bc", "d/+=d", "e=e"],
        "file, environment, flags"
    );
    // A bad value names its variable.
    let bad = |k: &str| (k == "STRATA_NUM_PARTITIONS").then(|| "many".to_owned());
    let e = ServeConfig::resolve_with(&ServeArgs::default(), bad).unwrap_err();
    assert!(e.to_string().contains("STRATA_NUM_PARTITIONS"), "{e}");
}

/// Every flag of `strata serve` but `--config`, with its key in the file: `(section, key)`,
/// the section empty for the top level.
fn setting_keys() -> Vec<(String, String, clap::Arg)> {
    let command = ServeArgs::augment_args(Command::new("serve"));
    let mut keys = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "config" {
            continue;
        }
        let (section, key) = ["mqtt", "mysql", "s3"]
            .iter()
            .find_map(|s| long.strip_prefix(&format!("{s}-")).map(|k| (*s, k)))
            .unwrap_or(("", long));
        keys.push((section.to_owned(), key.to_owned(), arg.clone()));
    }
    keys
}

/// The defaults as a TOML table, without the sections of engines this build lacks (their
/// defaults come from those engines).
fn defaults_table() -> toml::Table {
    toml::Table::try_from(Settings::defaults()).unwrap()
}

fn render(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn the_example_file_lists_every_setting_with_its_default() {
    let path = repo_file("strata.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // It is a valid config file, and resolves as no file at all.
    let example = resolve(&flags(&["--config", path.to_str().unwrap()])).unwrap();
    let none = resolve(&ServeArgs::default()).unwrap();
    assert_eq!(format!("{example:?}"), format!("{none:?}"));
    // What it sets is exactly the defaults.
    let mut written: toml::Table = toml::from_str(&text).unwrap();
    for (engine, built) in [
        ("mysql", cfg!(feature = "mysql")),
        ("s3", cfg!(feature = "s3")),
    ] {
        if !built {
            written.remove(engine);
        }
    }
    let mut defaults = defaults_table();
    defaults.retain(|_, v| v.as_table().is_none_or(|t| !t.is_empty()));
    assert_eq!(written, defaults);
    // Every setting is there, set or commented out.
    let mut present = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches("# ").trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let (s, key) = name.split_once('.').unwrap();
            present.insert((s.to_owned(), key.to_owned()));
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            present.insert((section.clone(), key.to_owned()));
        }
    }
    for (section, key, _) in setting_keys() {
        assert!(
            present.contains(&(section.clone(), key.clone())),
            "strata.example.toml lacks {section}.{key}"
        );
    }
}

#[test]
fn every_help_line_gives_the_default_in_force() {
    let defaults = defaults_table();
    for (section, key, arg) in setting_keys() {
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let table = if section.is_empty() {
            Some(&defaults)
        } else {
            defaults.get(&section).and_then(|t| t.as_table())
        };
        match table.and_then(|t| t.get(&key)) {
            Some(value) => {
                let expected = format!("[default: {}]", render(value));
                assert!(
                    help.ends_with(&expected),
                    "--{:?}: {help:?}, not {expected}",
                    arg.get_long()
                );
            }
            None => assert!(
                help.contains("[default: "),
                "--{:?}: {help:?}",
                arg.get_long()
            ),
        }
    }
}

#[test]
fn the_command_line_is_well_formed() {
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }
    Serve::command().debug_assert();
    let args = flags(&[
        "--mqtt-map",
        "a=a",
        "--mqtt-map",
        "b=b",
        "--auto-create-topics",
        "false",
    ]);
    assert_eq!(args.settings.mqtt.map.len(), 2);
    assert_eq!(args.settings.auto_create_topics, Some(false));
    assert_eq!(
        env::var_name("mqtt-max-connections"),
        "STRATA_MQTT_MAX_CONNECTIONS"
    );
}
