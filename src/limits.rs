//! Every fixed bound of the server, named once: the sizes, counts, timeouts and intervals that
//! bound a queue, buffer, map, request or wait and are not configurable (the configurable ones
//! are `config::Config`'s fields).
//!
//! Owns: the constants and the compile-time checks of the relations between them (`const _`
//! asserts at the end of each section). Protocol constants that are not our choice (close codes,
//! opcodes, RFC 6455's 125-byte control payload, a value advertised to clients) stay with their
//! protocol. Dialect-specific bounds carry their dialect in the name, in the last section.

use std::time::Duration;

// --- Shards, mesh and the owner pipeline ------------------------------------------------------

/// Most shards (threads) a server may run; `validate` refuses more and auto-sizing clamps to it.
pub const SHARDS_MAX: usize = 64;
/// Largest `outbound_bytes_max` `validate` takes: a connection's queue counts its bytes in a
/// `u32` (`net::conn`).
pub const OUTBOUND_BYTES_MAX_LIMIT: usize = 1 << 30;
/// Submission queue entries of each shard's io_uring (ops queued before a submit).
pub const URING_SQ_ENTRIES: u32 = 4096;
/// Completion queue entries of each shard's io_uring; past it completions overflow (the
/// defaults, 256 SQ / 512 CQ, overflowed about 0.7 times per delivery: perf/RESULTS.md).
pub const URING_CQ_ENTRIES: u32 = 16_384;
/// How often each shard's loop records that it runs (`loop_heartbeat_ms`, read by the systemd
/// watchdog thread).
pub const LOOP_HEARTBEAT_PERIOD: Duration = Duration::from_millis(250);
/// Commands taken from each mesh ring per inbox pass; then the task yields so the loop runs.
pub const MESH_DRAIN_BUDGET: usize = 1024;
/// Parked commands for one peer above which new client actions are refused (503).
pub const PARKED_ADMISSION_MAX: usize = 65_536;
/// How long a caller waits for an owner shard's answer before giving up with 503.
pub const OWNER_REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Shard::barrier` waits for its answer; then it returns `false`.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);
/// Commits waiting for the store above which new writes are refused with 503.
pub const COMMITS_PENDING_MAX: usize = 65_536;
/// Users with a rate-limit bucket on one shard at which a new user's arrival drops the buckets
/// of idle users (completely refilled ones).
pub const USER_RATES_MAX: usize = 65_536;
/// Verified tokens cached per shard; a full cache is emptied.
pub const TOKEN_CACHE_MAX: usize = 8192;

// A shard set is a `u64` mask (a room's subscriber shards, a user's connection shards).
const _: () = assert!(SHARDS_MAX <= u64::BITS as usize);
// The kernel refuses a completion queue smaller than the submission queue.
const _: () = assert!(URING_SQ_ENTRIES <= URING_CQ_ENTRIES);

// --- Users and sessions ------------------------------------------------------------------------

/// Sessions remembered per user (for logging out by id); past it the soonest-expiring one is
/// forgotten.
pub const SESSIONS_PER_USER_MAX: usize = 64;
/// How long a revocation is kept when the session's token expiry is unknown (a service logging
/// out a session no connection showed us), in seconds; then it is forgotten.
pub const REVOCATION_DEFAULT_TTL_S: u64 = 30 * 86_400;
/// Notifications kept per user; posting one more evicts the oldest (in memory and on disk).
pub const NOTIFICATIONS_PER_USER_MAX: usize = 1000;
/// Longest user id, in bytes (the rest of the rule is `model::UserId`'s); longer → refused
/// wherever an id enters (JWT `sub`, REST bodies and paths, dialect frames).
pub const USER_ID_BYTES_MAX: usize = 128;

// --- WebSocket connections -----------------------------------------------------------------------

/// Submission queue entries of each shard's own ring for WebSocket sockets (SQEs queued in a
/// turn beyond it are submitted early, in several `io_uring_enter`s).
pub const WS_URING_SQ_ENTRIES: u32 = 4096;
/// Completion queue entries of that ring; past it completions wait in the kernel's overflow
/// list (a multishot receive that overflows stops and is re-armed).
pub const WS_URING_CQ_ENTRIES: u32 = 32_768;
/// Provided receive buffers shared by a shard's WebSocket sockets (a power of two); when the
/// kernel finds none, a receive stops with ENOBUFS and is re-armed (`recv_enobufs_total`).
pub const WS_RECV_BUFFERS: u16 = 512;
/// Of those, the buffers posted at start; a receive that finds none posted doubles them (up to
/// `WS_RECV_BUFFERS`). The kernel cycles through every posted buffer, so each becomes resident:
/// a shard whose receives never run the first ones out keeps 128 KiB, not 1 MiB.
pub const WS_RECV_BUFFERS_FIRST: u16 = 64;
/// Bytes in one provided receive buffer: the most one receive completion carries.
pub const WS_RECV_BUFFER_BYTES: usize = 2048;
/// Slots of each shard's table of registered (direct) descriptors for WebSocket sockets (also
/// bounded by the open-file limit); a session whose slot key is past it uses its descriptor.
pub const WS_FIXED_FILES: u32 = 65_536;
/// Completions handled per pass of the shard's reaper; then the loop's other tasks run.
pub const WS_COMPLETIONS_PER_PASS: usize = 1024;
/// Most frames handed to one `sendmsg`; a longer queue is written in several calls.
pub const IOV_BATCH: usize = 64;
/// How long an ending connection may take to flush its close frame before it is dropped.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a closing connection may linger, in milliseconds, before the sweeper drops it.
pub const CLOSING_MAX_MS: u64 = 5_000;
/// Slices of the connection slab the sweeper visits one after another within a ping interval.
pub const SWEEP_SLICES: usize = 16;

// --- TLS ---------------------------------------------------------------------------------------

/// Ciphertext a TLS connection may hold between reads without completing a record: a record is
/// at most 16 KiB + 2 KiB, and a handshake message spans at most 64 KiB of records; more fails
/// the connection.
pub const TLS_PARTIAL_BYTES_MAX: usize = 96 * 1024;
/// Plaintext of queued frames a TLS connection's writer encrypts in one go (one buffer of
/// records, then one `send`); a single larger frame is encrypted alone.
pub const TLS_SEAL_BYTES_MAX: usize = 64 * 1024;
/// Ciphertext the HTTP phase of a TLS connection reads at once (the handshake, requests).
pub const TLS_HTTP_READ_BYTES: usize = 16 * 1024 + 512;

// The kernel's IOV_MAX: a `sendmsg` with more slices fails.
const _: () = assert!(IOV_BATCH <= libc::UIO_MAXIOV as usize);
const _: () = assert!(SWEEP_SLICES > 0);
const _: () = assert!(WS_RECV_BUFFERS.is_power_of_two() && WS_RECV_BUFFERS <= 32_768);
const _: () = assert!(WS_RECV_BUFFERS_FIRST > 0 && WS_RECV_BUFFERS_FIRST <= WS_RECV_BUFFERS);
const _: () = assert!(WS_URING_SQ_ENTRIES <= WS_URING_CQ_ENTRIES && WS_URING_CQ_ENTRIES <= 65_536);

// --- HTTP and authentication -------------------------------------------------------------------

/// First pause of the accept loop after an accept failed for want of descriptors or memory (or
/// an unknown reason); each further failure in a row doubles it.
pub const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Longest pause of the accept loop after failed accepts.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Most entries of `http_trusted_proxies` (checked on every accept, in order).
pub const TRUSTED_PROXIES_MAX: usize = 64;

/// Most headers accepted in one request head; more → 431.
pub const HTTP_HEADERS_MAX: usize = 64;
/// Longest accepted header segment (base64url text) of a JWT, in bytes; longer → refused
/// before decoding.
pub const JWT_HEADER_SEGMENT_BYTES_MAX: usize = 2048;

const _: () = assert!(ACCEPT_BACKOFF_FIRST.as_nanos() <= ACCEPT_BACKOFF_MAX.as_nanos());

// --- REST requests ------------------------------------------------------------------------------

/// Longest session id a logout names, in bytes; longer → 400.
pub const SESSION_ID_BYTES_MAX: usize = 256;
/// Most messages one REST history page returns; a larger `limit` → 400.
pub const HISTORY_PAGE_MAX: usize = 500;
/// REST history page size when `limit` is absent.
pub const HISTORY_PAGE_DEFAULT: usize = 50;
/// Longest client message id, in bytes; longer → 400.
pub const CLIENT_MESSAGE_ID_BYTES_MAX: usize = 128;
/// Longest room name, in bytes; longer → 400.
pub const ROOM_NAME_BYTES_MAX: usize = 256;
/// Longest room description, in bytes; longer → 400.
pub const ROOM_DESCRIPTION_BYTES_MAX: usize = 4096;
/// Largest room attributes object, in bytes of JSON; larger → 400.
pub const ROOM_ATTRIBUTES_BYTES_MAX: usize = 64 * 1024;
/// Longest message kind, in bytes; longer → 400.
pub const MESSAGE_KIND_BYTES_MAX: usize = 64;
/// What a message's encoded size (`model::event::message_encoded_len`) counts for everything
/// but its strings, attachments and attributes: field names, ids, times, punctuation.
pub const MESSAGE_ENCODED_OVERHEAD_BYTES: usize = 512;
/// Most rooms one room listing returns; the rest are left out.
pub const ROOM_LIST_MAX: usize = 1000;
/// Lifetime of a token the web console mints (`POST /console/token`, `--console-mint`), in s.
pub const CONSOLE_TOKEN_TTL_S: u64 = 3600;
/// Longest notification name, category or object type, in bytes; longer → 400.
pub const NOTIFICATION_NAME_BYTES_MAX: usize = 128;
/// Largest notification details object, in bytes of JSON; larger → 400.
pub const NOTIFICATION_DETAILS_BYTES_MAX: usize = 16 * 1024;
/// Most ids one notification read call marks; more → 400.
pub const NOTIFICATION_READ_IDS_MAX: usize = 1000;

const _: () = assert!(0 < HISTORY_PAGE_DEFAULT && HISTORY_PAGE_DEFAULT <= HISTORY_PAGE_MAX);
// A page the in-memory window cannot answer is read from disk, which caps its reads.
const _: () = assert!(HISTORY_PAGE_MAX <= STORE_HISTORY_READ_MAX);

// --- Store ------------------------------------------------------------------------------------

/// Most batches committed in one group; the rest wait for the next group.
pub const STORE_GROUP_BATCHES_MAX: usize = 1024;
/// Most ops committed in one group (a group always takes at least one batch); the rest wait for
/// the next group.
pub const STORE_GROUP_OPS_MAX: usize = 16 * 1024;
/// Most reads served in one read transaction; the rest get the next one.
pub const STORE_READ_BATCH_MAX: usize = 64;
/// Most messages one history read from disk returns; a larger `limit` is cut to it.
pub const STORE_HISTORY_READ_MAX: usize = 500;
/// Store reads (history pages, messages older than the window) one shard keeps in flight;
/// past it a read is refused with 503.
pub const STORE_READS_IN_FLIGHT_MAX: usize = 4096;
/// redb page cache per shard file, in bytes; past it pages are evicted.
pub const STORE_CACHE_BYTES: usize = 64 << 20;
/// Shortest time between the starts of two commits while busy (the previous group held
/// several batches): a writer that committed less than this ago lets the group fill until
/// then. Idle or lightly used stores commit at once; busy ones commit at most ~1 000 times a
/// second with larger groups (redb's cost is mostly per transaction and page), for at most
/// this much added latency.
pub const STORE_COMMIT_INTERVAL_MIN: Duration = Duration::from_millis(1);
/// First retry delay after a failed commit; each further failure doubles it.
pub const STORE_RETRY_FIRST: Duration = Duration::from_millis(10);
/// Longest retry delay after failed commits.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(1);
/// How long a shutting-down writer keeps retrying a failing group before giving up on it (and
/// logging how many ops are lost).
pub const STORE_FLUSH_GRACE: Duration = Duration::from_secs(10);

/// With `durability = "fsync"`, logged batches wait in memory until they hold this many ops
/// (or the writer is idle, or a read needs them), then go into redb in one non-durable
/// transaction: redb's cost per transaction is paid once per this many ops, not per group.
pub const STORE_APPLY_OPS: usize = 512;
/// With `durability = "fsync"`, how many logged ops may wait for redb while the apply thread
/// is busy with the previous ones; above it the writer waits for the apply before committing
/// more (memory bound: the batches stay in memory until applied).
pub const STORE_APPLY_PENDING_MAX: usize = 16 * STORE_APPLY_OPS;
/// With `durability = "fsync"`, how long the writer waits with nothing to commit before it
/// applies the logged batches it holds to redb.
pub const STORE_APPLY_IDLE: Duration = Duration::from_millis(5);
/// The write-ahead log is checkpointed (one durable redb commit, then the log starts over)
/// once it holds this many bytes of records.
pub const STORE_LOG_CHECKPOINT_BYTES: u64 = 32 << 20;
/// The log file grows by this many zero bytes at a time (written and synced once), so appends
/// below its end need no metadata in their `fdatasync`.
pub const STORE_LOG_EXTEND_BYTES: u64 = 1 << 20;

const _: () = assert!(STORE_RETRY_FIRST.as_nanos() <= STORE_RETRY_MAX.as_nanos());

// --- Dialects ---------------------------------------------------------------------------------

/// osu!: public rooms deliver chat to osu! connections of members active this recently, in
/// milliseconds (osu!'s `CHAT_ACTIVITY_TIMEOUT`); others do not get it.
pub const OSU_ACTIVE_WINDOW_MS: u64 = 60_000;

/// The longest `lastMessageText` a chat list shows (BIG), in bytes (cut at a character
/// boundary): a chat list holds up to `BIG_CHATS_MAX` of them.
pub const LAST_MESSAGE_PREVIEW_BYTES_MAX: usize = 256;

/// BIG: longest chat id, client message id, request id and ack id, in bytes; longer → error.
pub const BIG_ID_BYTES_MAX: usize = 128;
/// BIG: most messages one `messages` request returns; a larger `count` → error.
pub const BIG_MESSAGES_COUNT_MAX: u64 = 500;
/// BIG: the count of a `messages` request that gives none.
pub const BIG_MESSAGES_COUNT_DEFAULT: u64 = 300;
/// BIG: recent request ids remembered per connection for duplicate refusal; past it the oldest
/// is forgotten.
pub const BIG_REQUEST_IDS_MAX: usize = 1024;
/// BIG: requests one connection may have running at once; one more → error.
pub const BIG_IN_FLIGHT_MAX: usize = 64;
/// BIG: how long a connection the server closes (silence, client `offline`) may take to flush
/// its close frame before it is dropped.
pub const BIG_CLOSE_GRACE: Duration = Duration::from_millis(500);
/// BIG: most chats one chat list holds (the rest are left out), and the most a connection's
/// chat-id cache takes (a larger refresh is not cached).
pub const BIG_CHATS_MAX: usize = 1000;
/// BIG: users whose chat-list refresh may wait on one shard; more are dropped (and counted).
pub const BIG_CHATS_PENDING_MAX: usize = 65_536;
/// BIG: how long a chat-list refresh waits so that changes arriving together send one list.
pub const BIG_CHATS_DEBOUNCE: Duration = Duration::from_millis(20);
/// BIG: users with unacknowledged events one shard keeps; events for more are dropped (counted).
pub const BIG_UNACKED_USERS_MAX: usize = 100_000;

const _: () =
    assert!(0 < BIG_MESSAGES_COUNT_DEFAULT && BIG_MESSAGES_COUNT_DEFAULT <= BIG_MESSAGES_COUNT_MAX);
// `messages` pages go through the same window-or-disk history read as REST pages.
const _: () = assert!(BIG_MESSAGES_COUNT_MAX <= STORE_HISTORY_READ_MAX as u64);
// A BIG `chatId` names a dialog's peer: every user id must fit in one.
const _: () = assert!(USER_ID_BYTES_MAX <= BIG_ID_BYTES_MAX);
// A running request's id is still remembered, so a duplicate of it is refused.
const _: () = assert!(BIG_IN_FLIGHT_MAX <= BIG_REQUEST_IDS_MAX);
// The server-side close of a BIG connection is meant to end sooner than the generic bound.
const _: () = assert!(BIG_CLOSE_GRACE.as_millis() < CLOSING_MAX_MS as u128);

/// Rechat: most packets one Engine.IO polling payload may carry.
pub const RECHAT_PAYLOAD_PACKETS_MAX: usize = 256;
/// Rechat: most decimal digits of an Engine.IO v3 record length.
pub const RECHAT_LENGTH_DIGITS_MAX: usize = 9;
/// Rechat: most bytes of an Engine.IO `sid` a client may send back.
pub const RECHAT_SID_BYTES_MAX: usize = 64;
/// Rechat: most bytes of an event name (longer names of unknown events are shortened to it).
pub const RECHAT_EVENT_NAME_BYTES_MAX: usize = 64;
/// Rechat: most arguments after an event name (`Message.Send`, the longest action, has two).
pub const RECHAT_EVENT_ARGS_MAX: usize = 4;
/// Rechat: most bytes of a Socket.IO namespace.
pub const RECHAT_NSP_BYTES_MAX: usize = 128;
/// Rechat: most decimal digits of an ack id (JavaScript's safe integers have 16).
pub const RECHAT_ACK_ID_DIGITS_MAX: usize = 15;
/// Rechat: most bytes of an access token.
pub const RECHAT_TOKEN_BYTES_MAX: usize = 4096;
/// Rechat: most bytes of an id-like string (room ids, uuids of recommendations, mentions).
pub const RECHAT_ID_BYTES_MAX: usize = 64;
/// Rechat: most bytes of a URL field of a message.
pub const RECHAT_URL_BYTES_MAX: usize = 2048;
/// Rechat: most bytes of a comment (the configured message limit applies too).
pub const RECHAT_COMMENT_BYTES_MAX: usize = 65_536;
/// Rechat: most entries of a message's `mentions` or `attachments`.
pub const RECHAT_ID_LIST_MAX: usize = 64;
/// Rechat: most members a room object lists in `users`.
pub const RECHAT_ROOM_USERS_MAX: usize = 256;
/// Rechat: actions one socket may have waiting or running (they run one at a time); one more
/// is refused through its ack.
pub const RECHAT_IN_FLIGHT_MAX: usize = 64;
/// Rechat: how long a socket the server closes (silence, bad input, logout) may take to flush
/// its close frame before it is dropped.
pub const RECHAT_CLOSE_GRACE: Duration = Duration::from_millis(500);
/// How long a WebSocket that probed a polling session (`2probe`) may take to send the upgrade
/// packet (`5`) before it is closed (engine.io's `upgradeTimeout`).
pub const RECHAT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

// A v3 record length of that many digits fits a usize on every target.
const _: () = assert!(RECHAT_LENGTH_DIGITS_MAX <= 9);
// A sid names its shard in two hex digits.
const _: () = assert!(SHARDS_MAX <= 256);
// Ack ids stay JavaScript safe integers.
const _: () = assert!(RECHAT_ACK_ID_DIGITS_MAX < 16);
const _: () = assert!(RECHAT_CLOSE_GRACE.as_millis() < CLOSING_MAX_MS as u128);
