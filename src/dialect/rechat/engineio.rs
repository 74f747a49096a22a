//! Engine.IO, protocol v3 (Socket.IO 1.x/2.x clients) and v4 (Socket.IO 3.x/4.x clients): the
//! transport under Socket.IO. Pure: packets in and out as text, no IO, no clock.
//!
//! ```text
//! packet   <type><data>          type: 0 open, 1 close, 2 ping, 3 pong, 4 message, 5 upgrade, 6 noop
//! open     0{"sid":"…","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000[,"maxPayload":N]}
//! probe    client 2probe → server 3probe → client 5 (upgrade), on the new WebSocket
//! payload  v3: <len>:<packet><len>:<packet>…   len in UTF-16 code units, as JS counts `length`
//!          v4: <packet>\x1e<packet>\x1e…<packet>
//! ```
//!
//! Over a WebSocket every frame is one packet; over polling one HTTP body is one payload. Binary
//! packets (`b` prefix in a text payload) are refused: Rechat sends and accepts text only.
//! Keepalive: in v3 the client pings (`2`) and the server answers `3`; in v4 the server pings
//! and the client answers.

use serde_json::{json, Value};

use crate::model::ShardId;

pub use crate::limits::{
    RECHAT_LENGTH_DIGITS_MAX as LENGTH_DIGITS_MAX,
    RECHAT_PAYLOAD_PACKETS_MAX as PAYLOAD_PACKETS_MAX, RECHAT_SID_BYTES_MAX as SID_BYTES_MAX,
};

/// The probe ping a client sends first on the WebSocket it is upgrading to.
pub const PROBE_PING: &str = "2probe";
/// The server's answer to [`PROBE_PING`].
pub const PROBE_PONG: &str = "3probe";
/// A bare ping packet.
pub const PING: &str = "2";
/// A bare pong packet.
pub const PONG: &str = "3";
/// The close packet.
pub const CLOSE: &str = "1";
/// The upgrade packet (the client switches to the WebSocket).
pub const UPGRADE: &str = "5";
/// The noop packet (the server ends a pending poll while the client upgrades).
pub const NOOP: &str = "6";

/// The v4 record separator between the packets of a polling payload.
pub const RECORD_SEPARATOR: char = '\u{1e}';

/// The Engine.IO protocol revision, from the `EIO` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `EIO=3`: Socket.IO 1.x and 2.x clients; the client pings, payloads are length-prefixed.
    V3,
    /// `EIO=4`: Socket.IO 3.x and 4.x clients; the server pings, payloads use `\x1e`.
    V4,
}

impl Version {
    /// The version the `EIO` query parameter names; missing or any other value is refused (the
    /// engine.io server's "Unsupported protocol version").
    pub fn from_query(eio: Option<&str>) -> Result<Version, Error> {
        match eio {
            Some("3") => Ok(Version::V3),
            Some("4") => Ok(Version::V4),
            _ => Err(Error::UnsupportedVersion),
        }
    }

    /// Whether the server sends the pings (v4) rather than answers them (v3).
    pub fn server_pings(self) -> bool {
        self == Version::V4
    }
}

/// The transport a request asks for, from the `transport` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling: `GET` receives a payload, `POST` sends one.
    Polling,
    /// One WebSocket, one packet per frame.
    WebSocket,
}

impl Transport {
    /// The transport the `transport` query parameter names (`polling` or `websocket`).
    pub fn from_query(transport: Option<&str>) -> Result<Transport, Error> {
        match transport {
            Some("polling") => Ok(Transport::Polling),
            Some("websocket") => Ok(Transport::WebSocket),
            _ => Err(Error::UnknownTransport),
        }
    }
}

/// An Engine.IO packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: the handshake (server → client).
    Open,
    /// `1`: the session ends.
    Close,
    /// `2`: keepalive request (client → server in v3, server → client in v4; `2probe` either way
    /// while upgrading).
    Ping,
    /// `3`: keepalive answer.
    Pong,
    /// `4`: carries one Socket.IO packet.
    Message,
    /// `5`: the client moves to the WebSocket.
    Upgrade,
    /// `6`: nothing (ends a pending poll during an upgrade).
    Noop,
}

impl PacketType {
    /// The type of a type digit.
    pub fn from_byte(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }

    /// The type digit.
    pub fn as_char(self) -> char {
        match self {
            PacketType::Open => '0',
            PacketType::Close => '1',
            PacketType::Ping => '2',
            PacketType::Pong => '3',
            PacketType::Message => '4',
            PacketType::Upgrade => '5',
            PacketType::Noop => '6',
        }
    }
}

/// Why Engine.IO input was refused. Closed: the transport maps each to an HTTP 400 with the
/// engine.io error body ([`HttpError`]) or closes the WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// An empty packet or payload.
    Empty,
    /// The first character is not a packet type digit.
    UnknownType,
    /// A binary packet (`b` prefix): not supported.
    Binary,
    /// A v3 record length is missing, not decimal, or too long.
    BadLength,
    /// A v3 record is shorter than its length says, or the length splits a character.
    Truncated,
    /// The payload is larger than the caller's bound.
    TooLarge,
    /// The payload carries more than [`PAYLOAD_PACKETS_MAX`] packets.
    TooManyPackets,
    /// The open packet is not the JSON object it should be.
    BadOpen,
    /// `EIO` is missing or not 3 or 4.
    UnsupportedVersion,
    /// `transport` is missing or not `polling`/`websocket`.
    UnknownTransport,
}

impl Error {
    /// The engine.io server's HTTP error for this refusal.
    pub fn http(self) -> HttpError {
        match self {
            Error::UnsupportedVersion => HttpError::UnsupportedProtocolVersion,
            Error::UnknownTransport => HttpError::TransportUnknown,
            _ => HttpError::BadRequest,
        }
    }
}

/// The engine.io server's HTTP errors (400, body `{"code":n,"message":"…"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// 0: `transport` is unknown.
    TransportUnknown,
    /// 1: no session with this `sid` (or it is on another transport).
    SessionIdUnknown,
    /// 2: a handshake (no `sid`) must be a `GET`.
    BadHandshakeMethod,
    /// 3: anything else malformed.
    BadRequest,
    /// 4: refused by policy.
    Forbidden,
    /// 5: `EIO` is not a version this server speaks.
    UnsupportedProtocolVersion,
}

impl HttpError {
    /// The code and message the engine.io server uses.
    pub fn code_message(self) -> (u8, &'static str) {
        match self {
            HttpError::TransportUnknown => (0, "Transport unknown"),
            HttpError::SessionIdUnknown => (1, "Session ID unknown"),
            HttpError::BadHandshakeMethod => (2, "Bad handshake method"),
            HttpError::BadRequest => (3, "Bad request"),
            HttpError::Forbidden => (4, "Forbidden"),
            HttpError::UnsupportedProtocolVersion => (5, "Unsupported protocol version"),
        }
    }

    /// The JSON body of the 400 (403 for [`HttpError::Forbidden`]).
    pub fn body(self) -> String {
        let (code, message) = self.code_message();
        json!({ "code": code, "message": message }).to_string()
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            HttpError::Forbidden => 403,
            _ => 400,
        }
    }
}

/// One packet, borrowing its data from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Its type.
    pub kind: PacketType,
    /// Everything after the type digit (`probe` for a probe, the Socket.IO packet for a
    /// message).
    pub data: &'a str,
}

impl<'a> Packet<'a> {
    /// Decodes one text packet (a WebSocket text frame, or one record of a payload).
    pub fn decode(text: &'a str) -> Result<Packet<'a>, Error> {
        let first = *text.as_bytes().first().ok_or(Error::Empty)?;
        if first == b'b' {
            return Err(Error::Binary);
        }
        let kind = PacketType::from_byte(first).ok_or(Error::UnknownType)?;
        // The type digit is one ASCII byte, so index 1 is a character boundary.
        Ok(Packet { kind, data: &text[1..] })
    }

    /// The packet's text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(1 + self.data.len());
        out.push(self.kind.as_char());
        out.push_str(self.data);
        out
    }

    /// Whether this is the upgrade probe ping (`2probe`).
    pub fn is_probe(&self) -> bool {
        self.kind == PacketType::Ping && self.data == "probe"
    }
}

/// The handshake parameters of the open packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The session id the client sends back as `sid`.
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` on polling, `[]` on a WebSocket).
    pub upgrades: Vec<String>,
    /// Keepalive period, ms.
    pub ping_interval_ms: u64,
    /// How long past a ping without its answer the session is dropped, ms.
    pub ping_timeout_ms: u64,
    /// v4 only: the largest polling payload the server accepts, bytes.
    pub max_payload: Option<u64>,
}

impl Open {
    /// The open packet's text for `version` (`maxPayload` only in v4).
    pub fn encode(&self, version: Version) -> String {
        /// Field order as engine.io writes it, whatever `serde_json`'s map order is.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            sid: &'a str,
            upgrades: &'a [String],
            ping_interval: u64,
            ping_timeout: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            max_payload: Option<u64>,
        }
        let wire = Wire {
            sid: &self.sid,
            upgrades: &self.upgrades,
            ping_interval: self.ping_interval_ms,
            ping_timeout: self.ping_timeout_ms,
            max_payload: self.max_payload.filter(|_| version == Version::V4),
        };
        let mut out = String::from("0");
        // Serializing plain fields cannot fail.
        out.push_str(&serde_json::to_string(&wire).unwrap_or_default());
        out
    }

    /// Decodes the data of an open packet (what a client reads; the load generator and tests).
    pub fn decode(data: &str) -> Result<Open, Error> {
        let v: Value = serde_json::from_str(data).map_err(|_| Error::BadOpen)?;
        let sid = match v.get("sid") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= SID_BYTES_MAX => s.clone(),
            _ => return Err(Error::BadOpen),
        };
        let upgrades = match v.get("upgrades") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|u| u.as_str().map(str::to_string).ok_or(Error::BadOpen))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(Error::BadOpen),
        };
        let ms = |name: &str| v.get(name).and_then(Value::as_u64).ok_or(Error::BadOpen);
        let max_payload = match v.get("maxPayload") {
            None => None,
            Some(m) => Some(m.as_u64().ok_or(Error::BadOpen)?),
        };
        Ok(Open {
            sid,
            upgrades,
            ping_interval_ms: ms("pingInterval")?,
            ping_timeout_ms: ms("pingTimeout")?,
            max_payload,
        })
    }
}

/// Length of `s` as JavaScript's `String.length` counts it (UTF-16 code units).
pub fn js_length(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Decodes a polling payload (an HTTP `POST` body) of at most `max_bytes` bytes into its
/// packets. Zero-length v3 records are skipped, as the JS parser does.
pub fn decode_payload(
    version: Version,
    body: &str,
    max_bytes: usize,
) -> Result<Vec<Packet<'_>>, Error> {
    if body.len() > max_bytes {
        return Err(Error::TooLarge);
    }
    if body.is_empty() {
        return Err(Error::Empty);
    }
    match version {
        Version::V3 => decode_v3(body),
        Version::V4 => {
            let mut packets = Vec::new();
            for record in body.split(RECORD_SEPARATOR) {
                if packets.len() == PAYLOAD_PACKETS_MAX {
                    return Err(Error::TooManyPackets);
                }
                packets.push(Packet::decode(record)?);
            }
            Ok(packets)
        }
    }
}

/// `<len>:<packet>` records, `len` in UTF-16 code units.
fn decode_v3(body: &str) -> Result<Vec<Packet<'_>>, Error> {
    let mut packets = Vec::new();
    let mut records = 0usize;
    let mut rest = body;
    while !rest.is_empty() {
        records += 1;
        if records > PAYLOAD_PACKETS_MAX {
            return Err(Error::TooManyPackets);
        }
        let colon = rest.find(':').ok_or(Error::BadLength)?;
        let digits = &rest[..colon];
        if digits.is_empty()
            || digits.len() > LENGTH_DIGITS_MAX
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::BadLength);
        }
        // At most LENGTH_DIGITS_MAX ASCII digits: parses, and fits a usize.
        let units: usize = digits.parse().map_err(|_| Error::BadLength)?;
        let after = &rest[colon + 1..];
        let mut counted = 0usize;
        let mut end = 0usize;
        for c in after.chars() {
            if counted >= units {
                break;
            }
            counted += c.len_utf16();
            end += c.len_utf8();
        }
        if counted != units {
            // Too short, or the length ends inside a surrogate pair.
            return Err(Error::Truncated);
        }
        if units > 0 {
            packets.push(Packet::decode(&after[..end])?);
        }
        rest = &after[end..];
    }
    Ok(packets)
}

/// Encodes packets (each one packet's text, e.g. `42["User.Online","7"]`) as one polling payload
/// (a `GET` response body). No packets is v3's `0:` (an empty record) and v4's noop `6`, so a
/// poll ended without news is never an empty body the client would refuse.
pub fn encode_payload<'a>(version: Version, packets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut any = false;
    for packet in packets {
        match version {
            Version::V3 => {
                out.push_str(&js_length(packet).to_string());
                out.push(':');
            }
            Version::V4 if any => out.push(RECORD_SEPARATOR),
            Version::V4 => {}
        }
        out.push_str(packet);
        any = true;
    }
    if !any {
        out.push_str(match version {
            Version::V3 => "0:",
            Version::V4 => NOOP,
        });
    }
    out
}

/// Length of an Engine.IO `sid` we issue: 20 characters, like engine.io's own ids.
pub const SID_LEN: usize = 20;

const SID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A `sid` that names its shard: two lowercase hex digits of the shard, then 18 URL-safe base64
/// characters of `random` (the caller's CSPRNG bytes; 108 bits, unguessable). Any shard reading
/// it back ([`shard_of_sid`]) knows where the session lives.
pub fn sid_for(shard: ShardId, random: &[u8; 14]) -> String {
    // Two hex digits hold every shard (checked below against `SHARDS_MAX`).
    let mut out = format!("{:02x}", shard.get() & 0xff);
    // 14 bytes = 112 bits; 18 characters of 6 bits take the first 108.
    let mut acc: u128 = 0;
    for b in random {
        acc = (acc << 8) | u128::from(*b);
    }
    for i in 0..(SID_LEN - 2) {
        let shift = 112 - 6 * (i + 1);
        let index = ((acc >> shift) & 0x3f) as usize;
        out.push(char::from(SID_ALPHABET[index]));
    }
    out
}

/// The shard a `sid` we issued names, if it is one of ours for a server of `shard_count`
/// shards.
pub fn shard_of_sid(sid: &str, shard_count: usize) -> Option<ShardId> {
    let bytes = sid.as_bytes();
    if bytes.len() != SID_LEN || !bytes[2..].iter().all(|b| SID_ALPHABET.contains(b)) {
        return None;
    }
    let hex = sid.get(..2)?;
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let shard = usize::from_str_radix(hex, 16).ok()?;
    (shard < shard_count).then_some(ShardId(shard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_transports_come_from_the_query() {
        let cases: &[(Option<&str>, Result<Version, Error>)] = &[
            (Some("3"), Ok(Version::V3)),
            (Some("4"), Ok(Version::V4)),
            (None, Err(Error::UnsupportedVersion)),
            (Some(""), Err(Error::UnsupportedVersion)),
            (Some("2"), Err(Error::UnsupportedVersion)),
            (Some("04"), Err(Error::UnsupportedVersion)),
            (Some("4 "), Err(Error::UnsupportedVersion)),
        ];
        for (eio, want) in cases {
            assert_eq!(Version::from_query(*eio), *want, "{eio:?}");
        }
        assert!(Version::V4.server_pings() && !Version::V3.server_pings());
        let cases: &[(Option<&str>, Result<Transport, Error>)] = &[
            (Some("polling"), Ok(Transport::Polling)),
            (Some("websocket"), Ok(Transport::WebSocket)),
            (Some("flashsocket"), Err(Error::UnknownTransport)),
            (Some("WebSocket"), Err(Error::UnknownTransport)),
            (None, Err(Error::UnknownTransport)),
        ];
        for (t, want) in cases {
            assert_eq!(Transport::from_query(*t), *want, "{t:?}");
        }
    }

    #[test]
    fn packets_decode_and_reencode() {
        let cases: &[(&str, PacketType, &str)] = &[
            ("0{\"sid\":\"x\"}", PacketType::Open, "{\"sid\":\"x\"}"),
            ("1", PacketType::Close, ""),
            ("2", PacketType::Ping, ""),
            ("2probe", PacketType::Ping, "probe"),
            ("3probe", PacketType::Pong, "probe"),
            ("3", PacketType::Pong, ""),
            ("42[\"a\"]", PacketType::Message, "2[\"a\"]"),
            ("4héllo 😀", PacketType::Message, "héllo 😀"),
            ("5", PacketType::Upgrade, ""),
            ("6", PacketType::Noop, ""),
        ];
        for (text, kind, data) in cases {
            let p = Packet::decode(text).expect(text);
            assert_eq!((p.kind, p.data), (*kind, *data), "{text}");
            assert_eq!(p.encode(), *text);
        }
        assert!(Packet::decode(PROBE_PING).unwrap().is_probe());
        assert!(!Packet::decode("2prob").unwrap().is_probe());
        assert!(!Packet::decode(PROBE_PONG).unwrap().is_probe());
    }

    #[test]
    fn malformed_packets_are_refused() {
        let cases: &[(&str, Error)] = &[
            ("", Error::Empty),
            ("7", Error::UnknownType),
            ("9abc", Error::UnknownType),
            ("x", Error::UnknownType),
            (" 4", Error::UnknownType),
            ("é", Error::UnknownType),
            ("😀", Error::UnknownType),
            ("b4AAEC", Error::Binary),
            ("b", Error::Binary),
        ];
        for (text, want) in cases {
            assert_eq!(Packet::decode(text), Err(*want), "{text:?}");
        }
    }

    fn open(max_payload: Option<u64>) -> Open {
        Open {
            sid: "00abcdefghijklmnopqr".into(),
            upgrades: vec!["websocket".into()],
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            max_payload,
        }
    }

    #[test]
    fn open_packets_render_per_version_and_round_trip() {
        assert_eq!(
            open(Some(65_536)).encode(Version::V3),
            r#"0{"sid":"00abcdefghijklmnopqr","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}"#
        );
        let v4 = open(Some(65_536)).encode(Version::V4);
        assert_eq!(
            v4,
            r#"0{"sid":"00abcdefghijklmnopqr","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":65536}"#
        );
        let p = Packet::decode(&v4).unwrap();
        assert_eq!(p.kind, PacketType::Open);
        assert_eq!(Open::decode(p.data), Ok(open(Some(65_536))));
        let v3 = open(None).encode(Version::V3);
        assert_eq!(Open::decode(&v3[1..]), Ok(open(None)));
        // A sid needing escapes stays valid JSON.
        let mut odd = open(None);
        odd.sid = "a\"b\\c".into();
        assert_eq!(Open::decode(&odd.encode(Version::V4)[1..]), Ok(odd));
    }

    #[test]
    fn malformed_open_packets_are_refused() {
        let long_sid = format!(
            r#"{{"sid":"{}","upgrades":[],"pingInterval":1,"pingTimeout":1}}"#,
            "s".repeat(SID_BYTES_MAX + 1)
        );
        for bad in [
            "",
            "{",
            "[]",
            "null",
            r#"{"upgrades":[],"pingInterval":1,"pingTimeout":1}"#,
            r#"{"sid":"","upgrades":[],"pingInterval":1,"pingTimeout":1}"#,
            r#"{"sid":5,"upgrades":[],"pingInterval":1,"pingTimeout":1}"#,
            r#"{"sid":"a","upgrades":"websocket","pingInterval":1,"pingTimeout":1}"#,
            r#"{"sid":"a","upgrades":[1],"pingInterval":1,"pingTimeout":1}"#,
            r#"{"sid":"a","upgrades":[],"pingInterval":-1,"pingTimeout":1}"#,
            r#"{"sid":"a","upgrades":[],"pingInterval":1}"#,
            r#"{"sid":"a","upgrades":[],"pingInterval":1,"pingTimeout":1,"maxPayload":"x"}"#,
            long_sid.as_str(),
        ] {
            assert_eq!(Open::decode(bad), Err(Error::BadOpen), "{bad}");
        }
    }

    #[test]
    fn js_length_counts_utf16_code_units() {
        let cases: &[(&str, usize)] =
            &[("", 0), ("abc", 3), ("é", 1), ("€", 1), ("😀", 2), ("a😀b", 4)];
        for (s, n) in cases {
            assert_eq!(js_length(s), *n, "{s}");
        }
    }

    #[test]
    fn payloads_encode_per_version() {
        let packets = ["2", "42[\"a\",\"😀\"]", "6"];
        let cases: &[(Version, &[&str], &str)] = &[
            (Version::V3, &packets, "1:212:42[\"a\",\"😀\"]1:6"),
            (Version::V4, &packets, "2\u{1e}42[\"a\",\"😀\"]\u{1e}6"),
            (Version::V3, &["3"], "1:3"),
            (Version::V4, &["3"], "3"),
            (Version::V3, &[], "0:"),
            (Version::V4, &[], "6"),
        ];
        for (version, packets, want) in cases {
            let body = encode_payload(*version, packets.iter().copied());
            assert_eq!(body, *want, "{version:?}");
            let decoded = decode_payload(*version, &body, 1 << 20).expect(want);
            let texts: Vec<String> = decoded.iter().map(Packet::encode).collect();
            if packets.is_empty() && *version == Version::V3 {
                assert!(texts.is_empty());
            } else if packets.is_empty() {
                assert_eq!(texts, vec!["6".to_string()]);
            } else {
                assert_eq!(texts, packets.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn payloads_decode_per_version() {
        let cases: &[(Version, &str, &[&str])] = &[
            (Version::V3, "1:2", &["2"]),
            (Version::V3, "6:2probe", &["2probe"]),
            (Version::V3, "0:1:2", &["2"]),
            (Version::V3, "3:4é!2:3x", &["4é!", "3x"]),
            (Version::V3, "4:4😀a", &["4😀a"]),
            (Version::V3, "5:42:[]", &["42:[]"]),
            (Version::V4, "2", &["2"]),
            (Version::V4, "3\u{1e}42[\"x\"]", &["3", "42[\"x\"]"]),
            (Version::V4, "4😀", &["4😀"]),
        ];
        for (version, body, want) in cases {
            let got: Vec<String> = decode_payload(*version, body, 1024)
                .unwrap_or_else(|e| panic!("{body:?}: {e:?}"))
                .iter()
                .map(Packet::encode)
                .collect();
            assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{body:?}");
        }
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let many_v3 = "1:6".repeat(PAYLOAD_PACKETS_MAX + 1);
        let many_v4 = vec!["6"; PAYLOAD_PACKETS_MAX + 1].join("\u{1e}");
        let enough_v3 = "1:6".repeat(PAYLOAD_PACKETS_MAX);
        let empties_v3 = "0:".repeat(PAYLOAD_PACKETS_MAX + 1);
        let cases: &[(Version, &str, Error)] = &[
            (Version::V3, "", Error::Empty),
            (Version::V4, "", Error::Empty),
            (Version::V3, "2", Error::BadLength),
            (Version::V3, ":2", Error::BadLength),
            (Version::V3, "x:2", Error::BadLength),
            (Version::V3, "-1:2", Error::BadLength),
            (Version::V3, "+1:2", Error::BadLength),
            (Version::V3, "1e0:2", Error::BadLength),
            (Version::V3, "1234567890:2", Error::BadLength),
            (Version::V3, "99999999999999999999999:2", Error::BadLength),
            (Version::V3, "1:2garbage", Error::BadLength),
            (Version::V3, "1:21:", Error::Truncated),
            (Version::V3, "5:2", Error::Truncated),
            (Version::V3, "2:4😀", Error::Truncated),
            (Version::V3, "1:😀", Error::Truncated),
            (Version::V3, "1:9", Error::UnknownType),
            (Version::V3, "5:b4AAA", Error::Binary),
            (Version::V3, "1:2", Error::TooLarge),
            (Version::V3, many_v3.as_str(), Error::TooManyPackets),
            (Version::V3, empties_v3.as_str(), Error::TooManyPackets),
            (Version::V4, many_v4.as_str(), Error::TooManyPackets),
            (Version::V4, "2\u{1e}", Error::Empty),
            (Version::V4, "\u{1e}2", Error::Empty),
            (Version::V4, "2\u{1e}\u{1e}3", Error::Empty),
            (Version::V4, "8", Error::UnknownType),
            (Version::V4, "bAAEC", Error::Binary),
            (Version::V4, "3\u{1e}b4AA", Error::Binary),
        ];
        for (version, body, want) in cases {
            let max = if *body == "1:2" { 2 } else { 1 << 20 };
            assert_eq!(decode_payload(*version, body, max), Err(*want), "{version:?} {body:?}");
        }
        assert_eq!(decode_payload(Version::V3, &enough_v3, 1 << 20).map(|p| p.len()), Ok(256));
        assert_eq!(decode_payload(Version::V4, "2", 1), Ok(vec![Packet::decode("2").unwrap()]));
        assert_eq!(decode_payload(Version::V4, "22", 1), Err(Error::TooLarge));
    }

    #[test]
    fn every_slice_of_valid_payloads_decodes_or_errs_without_panic() {
        let bodies = [
            (Version::V3, "6:2probe4:4😀a12:42[\"x\",\"é€\"]1:6"),
            (Version::V4, "2probe\u{1e}4😀a\u{1e}42[\"x\",\"é€\"]\u{1e}6"),
        ];
        for (version, body) in bodies {
            for (i, _) in body.char_indices() {
                for (j, _) in body[i..].char_indices() {
                    let _ = decode_payload(version, &body[i..i + j], 1 << 10);
                }
                let _ = decode_payload(version, &body[i..], 1 << 10);
                let _ = Packet::decode(&body[i..]);
            }
            assert_eq!(decode_payload(version, body, 1 << 10).map(|p| p.len()), Ok(4));
        }
    }

    #[test]
    fn errors_map_to_the_engine_io_http_errors() {
        let cases: &[(Error, u16, &str)] = &[
            (Error::UnknownTransport, 400, r#"{"code":0,"message":"Transport unknown"}"#),
            (
                Error::UnsupportedVersion,
                400,
                r#"{"code":5,"message":"Unsupported protocol version"}"#,
            ),
            (Error::Binary, 400, r#"{"code":3,"message":"Bad request"}"#),
            (Error::Truncated, 400, r#"{"code":3,"message":"Bad request"}"#),
        ];
        for (error, status, body) in cases {
            assert_eq!((error.http().status(), error.http().body().as_str()), (*status, *body));
        }
        assert_eq!(
            HttpError::SessionIdUnknown.body(),
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        assert_eq!(HttpError::Forbidden.status(), 403);
        assert_eq!(HttpError::BadHandshakeMethod.code_message().0, 2);
    }

    #[test]
    fn sids_name_their_shard() {
        for shard in [0, 1, 7, 63].map(ShardId) {
            for random in [[0u8; 14], [0xff; 14], *b"roomcast-sid!!"] {
                let sid = sid_for(shard, &random);
                assert_eq!(sid.len(), SID_LEN, "{sid}");
                assert_eq!(shard_of_sid(&sid, 64), Some(shard), "{sid}");
            }
        }
        assert_ne!(sid_for(ShardId(0), &[0; 14]), sid_for(ShardId(0), &[1; 14]));
        let ours = sid_for(ShardId(3), &[9; 14]);
        let cases: &[(&str, usize)] = &[
            (&ours, 3), // shard 3 of 3 does not exist
            ("", 4),    // empty
            ("03", 4),  // short
            ("zzAAAAAAAAAAAAAAAAAA", 4),
            ("03AAAAAAAAAAAAAAAAA!", 4),
            ("03AAAAAAAAAAAAAAAAAAA", 4),
            ("0AAAAAAAAAAAAAAAAAAé", 4),
            ("+3AAAAAAAAAAAAAAAAAA", 4),
        ];
        for (sid, shards) in cases {
            assert_eq!(shard_of_sid(sid, *shards), None, "{sid}");
        }
    }
}
