//! Many concurrent companions on one simulator: each connection completes
//! the Noise handshake and receives its encrypted pair-device IQ, and all of
//! them stay open at once.
//!
//! `WA_SIM_CONNECTIONS` sets how many (default 300 so the suite stays
//! quick; the capacity goal is `WA_SIM_CONNECTIONS=2000` in a debug build).
//!
//! `WA_SIM_ADDR=HOST:PORT` dials a `wa-sim` already running there instead
//! of one in this process, and reads its connection count from
//! `/admin/health`: the way to measure a release `wa-sim` at 10,000
//! connections (`bench/sim-capacity.sh`), where one process holding both
//! ends would need twice the descriptors.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use buffa::Message as _;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wacore::framing::FrameDecoder;
use wacore::libsignal::protocol::KeyPair;
use wacore::noise::XxHandshakeState;
use wacore_binary::consts::WA_CONN_HEADER;
use wagate_whatsapp_sim::{Simulator, SimulatorHandle, World};
use waproto::whatsapp as wa;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_frame(ws: &mut Ws, decoder: &mut FrameDecoder) -> Vec<u8> {
    loop {
        if let Some(f) = decoder.decode_frame() {
            return f.to_vec();
        }
        if let Message::Binary(b) = ws.next().await.expect("socket open").expect("socket ok") {
            decoder.feed(&b);
        }
    }
}

/// One unpaired companion: handshake, then read the pair-device IQ.
async fn companion(url: String) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connects");
    let mut rng = rand_010::make_rng::<rand_010::rngs::StdRng>();
    let identity = KeyPair::generate(&mut rng);
    let payload = wa::ClientPayload {
        device_pairing_data: buffa::MessageField::some(
            wa::client_payload::DevicePairingRegistrationData {
                e_regid: Some(vec![0, 0, 0, 7]),
                e_keytype: Some(vec![5]),
                e_ident: Some(identity.public_key.public_key_bytes().to_vec()),
                e_skey_id: Some(vec![0, 0, 1]),
                e_skey_val: Some(identity.public_key.public_key_bytes().to_vec()),
                e_skey_sig: Some(vec![0; 64]),
                ..Default::default()
            },
        ),
        ..Default::default()
    }
    .encode_to_vec();
    let mut hs = XxHandshakeState::new(KeyPair::generate(&mut rng), payload, &WA_CONN_HEADER)
        .expect("handshake state");
    let hello = hs.build_client_hello().unwrap();
    let mut first = WA_CONN_HEADER.to_vec();
    first.extend(wacore::framing::encode_frame(&hello, None).unwrap());
    ws.send(Message::binary(first)).await.unwrap();
    let mut decoder = FrameDecoder::new();
    let server_hello = next_frame(&mut ws, &mut decoder).await;
    let finish = hs
        .read_server_hello_and_build_client_finish(&server_hello)
        .expect("server hello verifies");
    ws.send(Message::binary(
        wacore::framing::encode_frame(&finish, None).unwrap(),
    ))
    .await
    .unwrap();
    let keys = hs.finish().unwrap();
    let mut frame = next_frame(&mut ws, &mut decoder).await;
    keys.read_cipher
        .decrypt_in_place_with_counter(0, &mut frame)
        .expect("first stanza decrypts");
    let plain = wacore_binary::util::unpack(&frame).unwrap();
    let node = wacore_binary::marshal::unmarshal_ref(&plain).unwrap();
    assert!(
        node.get_optional_child("pair-device").is_some(),
        "an unpaired companion is sent pair-device"
    );
    ws
}

/// The simulator under test: in this process, or a `wa-sim` at an address.
enum Target {
    Here(SimulatorHandle),
    There(String),
}

impl Target {
    fn url(&self) -> String {
        match self {
            Target::Here(sim) => sim.url(),
            Target::There(addr) => format!("ws://{addr}/ws/chat"),
        }
    }

    async fn connections(&self) -> usize {
        match self {
            Target::Here(sim) => sim.admin().health().connections,
            Target::There(addr) => {
                let health: serde_json::Value = reqwest::get(format!("http://{addr}/admin/health"))
                    .await
                    .expect("health answers")
                    .json()
                    .await
                    .expect("health is JSON");
                health["connections"].as_u64().expect("a connection count") as usize
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_many_concurrent_connections() {
    common::init_logs();
    let n: usize = std::env::var("WA_SIM_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let sim = match std::env::var("WA_SIM_ADDR") {
        Ok(addr) => Target::There(addr),
        Err(_) => Target::Here(Simulator::start(World::empty()).await.unwrap()),
    };
    let before = sim.connections().await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for _ in 0..n {
        let url = sim.url();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            companion(url).await
        });
    }
    let mut sockets = Vec::with_capacity(n);
    while let Some(ws) = tasks.join_next().await {
        sockets.push(ws.expect("companion task"));
    }
    let elapsed = started.elapsed();
    assert_eq!(sim.connections().await, before + n);
    eprintln!("{n} companions handshaken and held in {elapsed:?}");
    if let Ok(hold) = std::env::var("WA_SIM_HOLD_SECS") {
        // Time for an outside observer (bench/sim-capacity.sh) to read the
        // simulator's memory with every connection open.
        eprintln!("holding them {hold} s");
        tokio::time::sleep(Duration::from_secs(hold.parse().unwrap_or(0))).await;
        assert_eq!(sim.connections().await, before + n, "all still open");
    }

    // All still served: the simulator answers a keepalive-free close cleanly.
    drop(sockets);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.connections().await > before {
        assert!(Instant::now() < deadline, "connections not released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Target::Here(sim) = sim {
        sim.shutdown().await;
    }
}
