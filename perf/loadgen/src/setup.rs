//! roomcast set-up over REST: create the rooms with their members using a service token.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::conn::source_ip;
use crate::http::HttpConn;
use crate::shared::Shared;

/// Creates `members.len()` rooms named `room-<i>` with the given member user names and returns
/// each room's id (`None` where creation failed; the failure is counted as a set-up error).
pub fn create_rooms(
    addr: SocketAddr,
    service_token: &str,
    members: &[Vec<String>],
    parallel: usize,
    shared: &Arc<Shared>,
) -> Vec<Option<u64>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let parallel = parallel.clamp(1, members.len().max(1));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for lane in 0..parallel {
            let token = service_token.to_string();
            let shared = shared.clone();
            let jobs: Vec<(usize, String)> = (lane..members.len())
                .step_by(parallel)
                .map(|i| (i, room_body(i, &members[i])))
                .collect();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                let mut conn = HttpConn::connect(addr, source_ip(lane, 1)).await.ok();
                for (i, body) in jobs {
                    let mut id = None;
                    for _attempt in 0..2 {
                        if conn.is_none() {
                            conn = HttpConn::connect(addr, source_ip(lane, 1)).await.ok();
                        }
                        let Some(c) = conn.as_mut() else { break };
                        match c.request("POST", "/api/v1/rooms", &token, body.as_bytes()).await {
                            Ok((status, resp)) if (200..300).contains(&status) => {
                                id = room_id(&resp);
                                break;
                            }
                            Ok((status, resp)) => {
                                eprintln!(
                                    "create room-{i}: HTTP {status}: {}",
                                    String::from_utf8_lossy(&resp[..resp.len().min(200)])
                                );
                                break;
                            }
                            Err(err) => {
                                eprintln!("create room-{i}: {err}");
                                conn = None;
                            }
                        }
                    }
                    if id.is_none() {
                        shared.errors.setup.fetch_add(1, Relaxed);
                    }
                    out.push((i, id));
                }
                out
            }));
        }
        let mut ids = vec![None; members.len()];
        for task in tasks {
            if let Ok(done) = task.await {
                for (i, id) in done {
                    ids[i] = id;
                }
            }
        }
        ids
    })
}

fn room_body(i: usize, members: &[String]) -> String {
    serde_json::json!({ "name": format!("room-{i}"), "kind": "group", "members": members })
        .to_string()
}

fn room_id(body: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("room")?.get("id")?.as_u64()
}
