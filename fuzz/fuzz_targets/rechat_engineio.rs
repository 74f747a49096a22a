//! Rechat's Engine.IO layer: `Packet::decode`, `decode_payload` (v3 and v4, polling bodies
//! under a small and a large size limit), `Open::decode`, the query parameters and
//! `shard_of_sid`.
//!
//! Invariants: no panic; a packet encodes back to exactly its text; a payload holds at most
//! `PAYLOAD_PACKETS_MAX` packets, and its packets, encoded again as a payload, decode to the
//! same packets; an open packet encodes and decodes to itself; a sid names an existing shard.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::dialect::rechat::engineio::{
    decode_payload, encode_payload, shard_of_sid, Open, Packet, Transport, Version,
    PAYLOAD_PACKETS_MAX,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    if let Ok(packet) = Packet::decode(text) {
        assert_eq!(packet.encode(), text);
    }

    for version in [Version::V3, Version::V4] {
        for max in [64, 1 << 20] {
            let Ok(packets) = decode_payload(version, text, max) else { continue };
            assert!(packets.len() <= PAYLOAD_PACKETS_MAX);
            let encoded: Vec<String> = packets.iter().map(Packet::encode).collect();
            let body = encode_payload(version, encoded.iter().map(String::as_str));
            let again = decode_payload(version, &body, usize::MAX).expect("re-encoded payload");
            if packets.is_empty() {
                assert!(again.is_empty(), "{body:?}");
            } else {
                assert_eq!(again, packets);
            }
        }
    }

    if let Ok(open) = Open::decode(text) {
        let encoded = open.encode(Version::V4);
        assert_eq!(Open::decode(&encoded[1..]), Ok(open));
    }

    let _ = Version::from_query(Some(text));
    let _ = Transport::from_query(Some(text));
    for shards in [1, 2, 64] {
        if let Some(shard) = shard_of_sid(text, shards) {
            assert!(usize::from(shard.0) < shards, "sid {text:?} names shard {shard:?}");
        }
    }
});
