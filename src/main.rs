//! The `roomcast` binary: `serve` runs the server, `token` mints a JWT. No logic lives here.

use clap::{Parser, Subcommand};

// `--features system-alloc` keeps the system allocator, so heap profilers that hook malloc
// (valgrind massif, heaptrack) see every allocation.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` (its place in `mi_option_e`, the same in mimalloc
/// 2.x and in 3.x, which libmimalloc-sys 0.1.49 builds by default; the Rust bindings do not
/// name it).
#[cfg(not(feature = "system-alloc"))]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs before `main`, ahead of the first allocation (Rust's runtime allocates before `main`,
/// and mimalloc reserves its arena then): arenas are committed on demand instead of up front,
/// so the memory mimalloc purges is decommitted (gone from RSS) rather than reset with
/// `MADV_FREE` (which stays in RSS until the kernel runs short). Idle servers measured
/// 1 065 → 720 bytes of RSS per idle connection (perf/RESULTS.md). `MIMALLOC_ARENA_EAGER_COMMIT`
/// in the environment still overrides it.
#[cfg(not(feature = "system-alloc"))]
#[used]
#[link_section = ".init_array"]
static MIMALLOC_DEFAULTS: extern "C" fn() = {
    extern "C" fn set_defaults() {
        // SAFETY: setting an option default is valid at any time, before mimalloc's init too.
        unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
    set_defaults
};

/// A thread-per-core io_uring WebSocket chat event server.
#[derive(Parser)]
#[command(name = "roomcast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<roomcast::config::ServeArgs>),
    /// Print a signed JWT for a user (or a service with --role service).
    Token(roomcast::config::TokenArgs),
}

fn main() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROOMCAST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, never into a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(*args),
        Command::Token(args) => token(args),
    };
    if let Err(message) = result {
        eprintln!("roomcast: {message}");
        std::process::exit(1);
    }
}

fn serve(args: roomcast::config::ServeArgs) -> Result<(), String> {
    let config = roomcast::config::load(args)?;
    if config.durability == roomcast::config::Durability::None {
        tracing::warn!("durability = none: for benchmarks only");
    }
    let data_dir = config.data_dir.clone();
    let durability = config.durability;
    let secret_configured = config.jwt_secret.is_some();
    let console_mint = config.console_mint;
    let tls = config.tls_cert.is_some();
    let handle = roomcast::start(config)?;
    if !secret_configured {
        tracing::info!(
            "JWT secret file: {}",
            data_dir.join(roomcast::auth::SECRET_FILE_NAME).display()
        );
    }
    let scheme = if tls { "https" } else { "http" };
    println!(
        "roomcast listening on {scheme}://{} with {} shard(s)",
        handle.addr, handle.shard_count
    );
    println!("data directory: {} (durability: {durability})", data_dir.display());
    let program = std::env::args_os().next().unwrap_or_else(|| "roomcast".into());
    let program = std::path::Path::new(&program).display();
    if secret_configured {
        println!("mint a token: {program} token --user alice --jwt-secret <the same secret>");
    } else {
        println!("mint a token: {program} token --user alice --data-dir {}", data_dir.display());
    }
    println!("web console: {scheme}://{}/ in a browser", handle.addr);
    if console_mint {
        tracing::warn!(
            "--console-mint: POST /console/token mints a token for any user to anyone who \
             reaches this server; dev servers only"
        );
    }
    println!("serving in the foreground; stop with Ctrl-C (SIGINT) or SIGTERM");
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("signal handler: {e}"))?;
    // Under systemd (Type=notify): ready once every shard listens, and the watchdog fed while
    // every shard's loop runs. Outside systemd these do nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        feed_watchdog(handle.health(), timeout);
    }
    for signal in signals.forever() {
        if signal == signal_hook::consts::SIGHUP {
            // New TLS connections get the files as they are now; open ones keep theirs.
            match handle.reload_tls() {
                Ok(true) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                Ok(false) => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                Err(e) => tracing::error!("SIGHUP: TLS reload failed, keeping the old: {e}"),
            }
            continue;
        }
        tracing::info!(
            signal,
            "draining: answering requests in flight, flushing queued frames, then 1001"
        );
        break;
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    handle.shutdown();
    Ok(())
}

/// Sends systemd `WATCHDOG=1` every quarter of `timeout` while every shard's loop has run
/// within half of it (at least a second: the loops record it every 250 ms); a stuck shard stops
/// the feeding, and systemd restarts the service.
fn feed_watchdog(health: roomcast::shard::spawn::Health, timeout: std::time::Duration) {
    let started_ms = roomcast::model::ids::now_ms();
    let within_ms = ((timeout / 2).as_millis() as u64).max(1000);
    let spawned = std::thread::Builder::new().name("watchdog".into()).spawn(move || loop {
        std::thread::sleep(timeout / 4);
        if health.loops_alive(within_ms, started_ms) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!(
                "a shard's loop has not ticked for {within_ms} ms: not feeding the watchdog"
            );
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("no watchdog thread: {e}");
    }
}

fn token(args: roomcast::config::TokenArgs) -> Result<(), String> {
    args.validate()?;
    let config = roomcast::config::load(args.serve_args())?;
    let (secret, created) = roomcast::config::token_secret(&config, args.create_secret)?;
    if created {
        eprintln!(
            "generated a new JWT secret in {}",
            config.data_dir.join(roomcast::auth::SECRET_FILE_NAME).display()
        );
    }
    let token = roomcast::auth::mint_hs256(&secret, &args.mint_claims()).map_err(|e| match e {
        roomcast::auth::AuthError::Invalid(reason) => format!("cannot mint a token: {reason}"),
        other => format!("cannot mint a token: {other}"),
    })?;
    println!("{token}");
    Ok(())
}
