//! Tests for [`crate::config`]: defaults, precedence (flags/env via
//! [`ServeArgs`] > TOML > default), TOML strictness, validation, clap wiring.
//!
//! Env precedence is tested by constructing [`ServeArgs`] directly (that is
//! what clap produces from `ROOMCAST_*`), never by mutating the process env.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use super::*;

#[derive(Parser)]
struct ServeCli {
    #[command(flatten)]
    args: ServeArgs,
}

#[derive(Parser)]
struct TokenCli {
    #[command(flatten)]
    args: TokenArgs,
}

/// A change applied to a default [`Config`] in validation tests.
type Mutation = fn(&mut Config);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[test]
fn defaults_match_the_documented_numbers() {
    let c = Config::default();
    assert_eq!(c.listen, addr("127.0.0.1:8080"));
    assert_eq!(c.shards, 0);
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!((c.jwt_secret.as_deref(), c.echo_endpoint.as_deref()), (None, None));
    assert_eq!((&c.jwt_rsa_public_key, &c.jwt_ec_public_key), (&None, &None));
    assert_eq!(c.jwt_leeway_s, 60);
    assert!(c.pin_cpus);
    assert!(!c.console_mint, "the console's token minting is off unless asked for");
    assert_eq!(c.durability, Durability::Fsync);
    assert_eq!(c.frame_bytes_max, 65_536);
    assert_eq!(c.message_bytes_max, 65_536);
    assert_eq!(c.http_head_bytes_max, 8_192);
    assert_eq!(c.rest_body_bytes_max, 1_048_576);
    assert_eq!(c.stored_message_bytes_max, 131_072);
    assert_eq!(c.history_page_bytes_max, 524_288);
    assert_eq!(c.outbound_bytes_max, 1_048_576);
    assert_eq!(c.handshake_timeout_ms, 10_000);
    assert_eq!(c.idle_timeout_ms, 60_000);
    assert_eq!(c.http_keepalive_timeout_ms, 60_000);
    assert_eq!(c.http_connections_per_shard_max, 10_000);
    assert_eq!(c.http_connections_per_ip_max, 64);
    assert_eq!(c.ping_interval_ms, 20_000);
    assert_eq!(c.actions_per_second, 100);
    assert_eq!(c.actions_burst, 200);
    assert_eq!(c.connections_per_shard_max, 100_000);
    assert_eq!(c.connections_per_user_max, 64);
    assert_eq!(c.ring_slots, 4_096);
    assert_eq!(c.rooms_per_shard_max, 1_000_000);
    assert_eq!(c.history_per_room_max, 10_000);
    assert_eq!(c.history_bytes_per_room_max, 8 << 20);
    assert_eq!(c.members_per_room_max, 100_000);
    assert_eq!(c.read_buffer_bytes_initial, 512);
    assert_eq!((c.deflate, c.deflate_threshold_bytes), (Switch::On, 128));
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(merge(&ServeArgs::default(), None), Ok(c));
}

#[test]
fn toml_overrides_defaults() {
    let toml = r#"
        listen = "0.0.0.0:9000"
        shards = 4
        data_dir = "/var/lib/roomcast"
        jwt_secret = "s3cret"
        jwt_rsa_public_key = "/etc/rc/rsa.pem"
        echo_endpoint = "/echo"
        pin_cpus = false
        durability = "none"
        frame_bytes_max = 16384
        stored_message_bytes_max = 4096
        history_page_bytes_max = 8192
        ring_slots = 1024
        actions_burst = 50
        http_keepalive_timeout_ms = 5000
        http_connections_per_ip_max = 3
        http_trusted_proxies = "10.0.0.0/8"
    "#;
    let c = merge(&ServeArgs::default(), Some(toml)).expect("valid toml");
    assert_eq!(c.listen, addr("0.0.0.0:9000"));
    assert_eq!(c.shards, 4);
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/roomcast"));
    assert_eq!(c.jwt_secret.as_deref(), Some("s3cret"));
    assert_eq!(c.jwt_rsa_public_key, Some(PathBuf::from("/etc/rc/rsa.pem")));
    assert_eq!(c.echo_endpoint.as_deref(), Some("/echo"));
    assert!(!c.pin_cpus);
    assert_eq!(c.durability, Durability::None);
    assert_eq!((c.frame_bytes_max, c.ring_slots, c.actions_burst), (16_384, 1_024, 50));
    assert_eq!((c.stored_message_bytes_max, c.history_page_bytes_max), (4_096, 8_192));
    assert_eq!((c.http_keepalive_timeout_ms, c.http_connections_per_ip_max), (5_000, 3));
    assert_eq!(c.trusted_proxies(), Ok(vec!["10.0.0.0/8".parse().expect("network")]));
    assert_eq!(c.message_bytes_max, 65_536, "untouched fields keep defaults");
}

#[test]
fn args_and_env_override_toml() {
    let toml = "listen = \"0.0.0.0:9000\"\nshards = 4\npin_cpus = true\nidle_timeout_ms = 90000";
    let args = ServeArgs {
        listen: Some(addr("10.0.0.1:7000")),
        shards: Some(2),
        no_pin_cpus: Some(true),
        durability: Some(Durability::None),
        ..ServeArgs::default()
    };
    let c = merge(&args, Some(toml)).expect("valid");
    assert_eq!(c.listen, addr("10.0.0.1:7000"));
    assert_eq!(c.shards, 2);
    assert!(!c.pin_cpus);
    assert_eq!(c.durability, Durability::None);
    assert_eq!(c.idle_timeout_ms, 90_000, "TOML still beats default");

    let keep_pinning = ServeArgs { no_pin_cpus: Some(false), ..ServeArgs::default() };
    let c = merge(&keep_pinning, Some("pin_cpus = false")).expect("valid");
    assert!(c.pin_cpus, "--no-pin-cpus=false beats the file");
}

#[test]
fn unknown_toml_key_is_an_error_naming_it() {
    let err = merge(&ServeArgs::default(), Some("listen = \"127.0.0.1:1\"\nshard = 3"))
        .expect_err("unknown key");
    assert!(err.contains("unknown field `shard`"), "{err}");
    let err = merge(&ServeArgs::default(), Some("[limits]\nframe_bytes_max = 1"))
        .expect_err("tables are not keys");
    assert!(err.contains("unknown field `limits`"), "{err}");
    let err = merge(&ServeArgs::default(), Some("shards = \"four\"")).expect_err("bad type");
    assert!(err.contains("shards"), "{err}");
    let err = merge(&ServeArgs::default(), Some("durability = \"sometimes\""));
    assert!(err.is_err());
}

#[test]
fn validate_rejects_zero_bounds() {
    let zeroed: &[Mutation] = &[
        |c| c.frame_bytes_max = 0,
        |c| c.message_bytes_max = 0,
        |c| c.http_head_bytes_max = 0,
        |c| c.rest_body_bytes_max = 0,
        |c| c.history_page_bytes_max = 0,
        |c| c.outbound_bytes_max = 0,
        |c| c.handshake_timeout_ms = 0,
        |c| c.idle_timeout_ms = 0,
        |c| c.http_keepalive_timeout_ms = 0,
        |c| c.http_connections_per_shard_max = 0,
        |c| c.http_connections_per_ip_max = 0,
        |c| c.ping_interval_ms = 0,
        |c| c.actions_per_second = 0,
        |c| c.actions_burst = 0,
        |c| c.connections_per_shard_max = 0,
        |c| c.connections_per_user_max = 0,
        |c| c.ring_slots = 0,
        |c| c.rooms_per_shard_max = 0,
        |c| c.history_per_room_max = 0,
        |c| c.history_bytes_per_room_max = 0,
        |c| c.members_per_room_max = 0,
        |c| c.read_buffer_bytes_initial = 0,
    ];
    for (i, zero) in zeroed.iter().enumerate() {
        let mut c = Config::default();
        zero(&mut c);
        let err = c.validate().expect_err("zero bound refused");
        assert!(err.contains("must be greater than 0"), "case {i}: {err}");
    }
    let args = ServeArgs { ring_slots: Some(0), ..ServeArgs::default() };
    assert!(merge(&args, None).expect_err("merge validates").contains("ring_slots"));
}

#[test]
fn validate_checks_relationships() {
    let bad: [(Mutation, &str); 17] = [
        (|c| c.http_trusted_proxies = "10.0.0.0/33".into(), "http_trusted_proxies"),
        (|c| c.http_trusted_proxies = "10.0.0.1,proxy.example".into(), "http_trusted_proxies"),
        (|c| c.tls_cert = Some("cert.pem".into()), "tls_key"),
        (|c| c.tls_key = Some("key.pem".into()), "tls_cert"),
        (|c| c.shards = 65, "shards"),
        (|c| c.outbound_bytes_max = (1 << 30) + 1, "outbound_bytes_max"),
        (|c| c.frame_bytes_max = c.message_bytes_max + 1, "frame_bytes_max"),
        (|c| c.ring_slots = 1000, "ring_slots"),
        (|c| c.ping_interval_ms = c.idle_timeout_ms, "ping_interval_ms"),
        (|c| c.echo_endpoint = Some("echo".into()), "echo_endpoint"),
        (|c| c.jwt_secret = Some(String::new()), "jwt_secret"),
        (|c| c.data_dir = PathBuf::new(), "data_dir"),
        (|c| c.stored_message_bytes_max = 0, "stored_message_bytes_max"),
        (|c| c.stored_message_bytes_max = 512, "stored_message_bytes_max"),
        (|c| c.history_page_bytes_max = c.stored_message_bytes_max - 1, "history_page_bytes_max"),
        (|c| c.rechat_cors_origins = "app.example".into(), "rechat_cors_origins"),
        (
            |c| c.history_bytes_per_room_max = c.stored_message_bytes_max - 1,
            "history_bytes_per_room_max",
        ),
    ];
    for (mutate, field) in bad {
        let mut c = Config::default();
        mutate(&mut c);
        let err = c.validate().expect_err(field);
        assert!(err.contains(field), "{field}: {err}");
    }
    let ok = Config { shards: 64, frame_bytes_max: 1024, jwt_leeway_s: 0, ..Config::default() };
    assert_eq!(ok.validate(), Ok(()));
}

#[test]
fn shard_count_resolves_zero_to_cores() {
    let auto = Config::default().shard_count();
    assert!((1..=SHARDS_MAX).contains(&auto));
    assert_eq!(Config { shards: 3, ..Config::default() }.shard_count(), 3);
}

#[test]
fn clap_flags_are_kebab_case_field_names() {
    ServeCli::command().debug_assert();
    TokenCli::command().debug_assert();
    let cli = ServeCli::try_parse_from([
        "serve",
        "--listen=0.0.0.0:1",
        "--shards=2",
        "--data-dir=/tmp/x",
        "--durability=none",
        "--no-pin-cpus",
        "--echo-endpoint=/echo",
        "--frame-bytes-max=1000",
        "--read-buffer-bytes-initial=256",
        "--connections-per-shard-max=10",
        "--stored-message-bytes-max=2048",
        "--history-page-bytes-max=4096",
        "--http-keepalive-timeout-ms=1500",
        "--http-connections-per-shard-max=300",
        "--http-connections-per-ip-max=7",
        "--connections-per-user-max=3",
        "--deflate=off",
        "--deflate-threshold-bytes=0",
    ])
    .expect("flags parse");
    let c = merge(&cli.args, None).expect("valid");
    assert_eq!(c.listen, addr("0.0.0.0:1"));
    assert_eq!(c.durability, Durability::None);
    assert!(!c.pin_cpus);
    assert_eq!(c.frame_bytes_max, 1000);
    assert_eq!(c.read_buffer_bytes_initial, 256);
    assert_eq!(c.connections_per_shard_max, 10);
    assert_eq!((c.stored_message_bytes_max, c.history_page_bytes_max), (2048, 4096));
    assert_eq!(c.http_keepalive_timeout_ms, 1500);
    assert_eq!((c.http_connections_per_shard_max, c.http_connections_per_ip_max), (300, 7));
    assert_eq!(c.connections_per_user_max, 3);
    assert!(!c.console_mint);
    assert_eq!((c.deflate, c.deflate_threshold_bytes), (Switch::Off, 0));
    assert!(ServeCli::try_parse_from(["serve", "--deflate=maybe"]).is_err());
    let toml = "deflate = \"off\"\ndeflate_threshold_bytes = 1024\n";
    let c = merge(&ServeArgs::default(), Some(toml)).expect("valid");
    assert_eq!((c.deflate, c.deflate_threshold_bytes), (Switch::Off, 1024));
    assert!(ServeCli::try_parse_from(["serve", "--durability=maybe"]).is_err());
    assert!(ServeCli::try_parse_from(["serve", "--shards=-1"]).is_err());
}

#[test]
fn token_args_parse_and_map_to_claims() {
    let cli = TokenCli::try_parse_from([
        "token", "--user", "42", "--role", "service", "--scopes", "a, b,,c", "--sid", "s1",
    ])
    .expect("token flags parse");
    assert_eq!(cli.args.ttl, 86_400);
    let claims = cli.args.mint_claims();
    assert_eq!(claims.sub, "42");
    assert_eq!(claims.role.as_deref(), Some("service"));
    assert_eq!(claims.sid.as_deref(), Some("s1"));
    assert_eq!(claims.scopes, Some(vec!["a".into(), "b".into(), "c".into()]));
    assert_eq!(claims.ttl_s, 86_400);
    assert!(TokenCli::try_parse_from(["token", "--ttl", "5"]).is_err(), "--user required");

    let with_secret =
        TokenCli::try_parse_from(["token", "--user=u", "--jwt-secret=k"]).expect("parse");
    let serve = with_secret.args.serve_args();
    assert_eq!(serve.jwt_secret.as_deref(), Some("k"));
    assert!(!format!("{:?}", with_secret.args).contains("\"k\""));
}

#[test]
fn resolve_secret_prefers_configured_then_file() {
    let configured = Config { jwt_secret: Some("direct".into()), ..Config::default() };
    let (secret, created) = resolve_secret(&configured).expect("configured secret");
    assert_eq!((secret.as_slice(), created), (&b"direct"[..], false));

    let dir = std::env::temp_dir().join(format!(
        "roomcast-config-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let from_file = Config { data_dir: dir.clone(), ..Config::default() };
    let (first, created) = resolve_secret(&from_file).expect("created");
    assert!(created);
    let (settings, created) = auth_settings(&from_file).expect("settings");
    assert!(!created);
    assert_eq!(settings.hs256_secret, Some(first));
    assert_eq!(settings.leeway_s, 60);
    let missing_pem = Config { jwt_rsa_public_key: Some(dir.join("nope.pem")), ..from_file };
    let err = auth_settings(&missing_pem).expect_err("missing PEM file");
    assert!(err.to_string().contains("nope.pem"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_redacts_the_secret() {
    let c = Config { jwt_secret: Some("hunter2".into()), ..Config::default() };
    assert!(!format!("{c:?}").contains("hunter2"));
    let a = ServeArgs { jwt_secret: Some("hunter2".into()), ..ServeArgs::default() };
    assert!(!format!("{a:?}").contains("hunter2"));
}

#[test]
fn load_reads_the_config_file() {
    let dir = std::env::temp_dir().join(format!(
        "roomcast-load-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("roomcast.toml");
    std::fs::write(&path, "shards = 5\nhistory_per_room_max = 7\n").expect("write");
    let args = ServeArgs { config: Some(path.clone()), shards: Some(6), ..ServeArgs::default() };
    let c = load(args).expect("load");
    assert_eq!((c.shards, c.history_per_room_max), (6, 7));
    std::fs::write(&path, "bogus_key = 1\n").expect("write");
    let err = load(ServeArgs { config: Some(path.clone()), ..ServeArgs::default() })
        .expect_err("unknown key");
    assert!(err.contains("bogus_key") && err.contains("roomcast.toml"), "{err}");
    let missing = ServeArgs { config: Some(dir.join("absent.toml")), ..ServeArgs::default() };
    assert!(load(missing).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn console_mint_is_a_flag_an_env_value_and_a_toml_key() {
    let on = ServeCli::try_parse_from(["serve", "--console-mint"]).expect("flag parses");
    assert!(merge(&on.args, None).expect("valid").console_mint);
    let off = ServeCli::try_parse_from(["serve", "--console-mint=false"]).expect("parses");
    assert!(!merge(&off.args, Some("console_mint = true")).expect("valid").console_mint);
    assert!(merge(&ServeArgs::default(), Some("console_mint = true")).expect("valid").console_mint);
    // What clap makes of ROOMCAST_CONSOLE_MINT=1.
    let env = ServeArgs { console_mint: Some(true), ..ServeArgs::default() };
    assert!(merge(&env, Some("console_mint = false")).expect("valid").console_mint);
}

#[test]
fn tls_files_are_flags_env_values_and_toml_keys() {
    let cli = ServeCli::try_parse_from(["serve", "--tls-cert=/c.pem", "--tls-key=/k.pem"])
        .expect("flags parse");
    let c = merge(&cli.args, None).expect("valid");
    assert_eq!(c.tls_cert.as_deref(), Some(std::path::Path::new("/c.pem")));
    assert_eq!(c.tls_key.as_deref(), Some(std::path::Path::new("/k.pem")));
    let c = merge(&ServeArgs::default(), Some("tls_cert = \"a.pem\"\ntls_key = \"b.pem\"\n"))
        .expect("valid");
    assert_eq!(c.tls_cert.as_deref(), Some(std::path::Path::new("a.pem")));
    assert_eq!(c.tls_key.as_deref(), Some(std::path::Path::new("b.pem")));
    assert!(merge(&ServeArgs::default(), Some("tls_cert = \"a.pem\"")).is_err());
}

#[test]
fn cluster_settings_are_flags_env_values_and_toml_keys() {
    // Alone by default, exactly as before.
    let alone = merge(&ServeArgs::default(), None).expect("valid");
    assert!(!alone.clustered());
    assert_eq!((alone.node, alone.nodes, alone.cluster_prefix.as_str()), (0, 1, "roomcast"));
    let cli = ServeCli::try_parse_from([
        "serve",
        "--cluster-url=nats://127.0.0.1:4222",
        "--node=2",
        "--nodes=3",
        "--shards=2",
        "--cluster-prefix=rc.test",
        "--cluster-user=u",
        "--cluster-password=p",
        "--cluster-tls-ca=/ca.pem",
    ])
    .expect("flags parse");
    let c = merge(&cli.args, None).expect("valid");
    assert_eq!(c.cluster_url.as_deref(), Some("nats://127.0.0.1:4222"));
    assert_eq!((c.node, c.nodes, c.shards), (2, 3, 2));
    assert_eq!(c.cluster_prefix, "rc.test");
    assert_eq!(c.cluster_tls_ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
    assert!(!format!("{c:?}").contains("\"p\""), "the password is redacted");
    // TOML under env (what clap makes of ROOMCAST_NODE=1).
    let toml = "cluster_url = \"nats://n:4222\"\nnode = 0\nnodes = 2\nshards = 1\n";
    let env = ServeArgs { node: Some(1), ..ServeArgs::default() };
    let c = merge(&env, Some(toml)).expect("valid");
    assert_eq!((c.node, c.nodes), (1, 2));
    // Rules.
    for bad in [
        "nodes = 2\nshards = 1\n",                                       // no URL
        "cluster_url = \"nats://n\"\nnode = 2\nnodes = 2\nshards = 1\n", // node >= nodes
        "cluster_url = \"nats://n\"\nnodes = 2\n",                       // shards = 0
        "cluster_url = \"nats://n\"\nnodes = 33\nshards = 2\n",          // > 64 shards
        "cluster_url = \"nats://n\"\nshards = 1\ncluster_prefix = \"a..b\"\n", // bad prefix
        "cluster_url = \"nats://n\"\nshards = 1\ncluster_user = \"u\"\n", // no password
        "cluster_url = \"nats://n\"\nshards = 1\ncluster_tls_cert = \"c\"\n", // no key
    ] {
        assert!(merge(&ServeArgs::default(), Some(bad)).is_err(), "{bad:?} must be refused");
    }
}
