//! One client connection: WebSocket framing, the Noise handshake, then the
//! encrypted stanza loop. One task per connection: its login on the login
//! threads (`LoginThreads`), the rest on the runtime that accepted it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::BytesMut;
use tokio::sync::mpsc;
use wacore::framing::FrameDecoder;
use wacore::noise::NoiseCipher;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::iq::Session;
use crate::noise::{self, Established, HelloOutcome};
use crate::state::{Conn, Outbound, Registration, SignedPreKey, Sim};

/// How long a client may take to say hello and finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection with no traffic at all for this long is closed (clients
/// ping every ~20–30 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// The byte stream of one WebSocket, cut into protocol frames.
struct Wire {
    ws: WebSocket,
    decoder: FrameDecoder,
    /// Bytes before the connection header was complete.
    head: Option<Vec<u8>>,
}

impl Wire {
    fn new(ws: WebSocket) -> Self {
        Self {
            ws,
            decoder: FrameDecoder::new(),
            head: Some(Vec::new()),
        }
    }

    /// Feeds raw bytes; strips the connection header (and an edge-routing
    /// pre-intro) the first time.
    fn feed(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let Some(head) = self.head.as_mut() else {
            self.decoder.feed(data);
            return Ok(());
        };
        head.extend_from_slice(data);
        let mut start = 0;
        if head.starts_with(b"ED\x00\x01") {
            if head.len() < 7 {
                return Ok(());
            }
            let len =
                (usize::from(head[4]) << 16) | (usize::from(head[5]) << 8) | usize::from(head[6]);
            start = 7 + len;
        }
        if head.len() < start + 4 {
            return Ok(());
        }
        if &head[start..start + 2] != b"WA" {
            anyhow::bail!("no WA connection header");
        }
        let rest = head[start + 4..].to_vec();
        self.head = None;
        self.decoder.feed(&rest);
        Ok(())
    }

    /// The next frame, reading from the socket as needed; `None` at close.
    async fn next_frame(&mut self) -> anyhow::Result<Option<BytesMut>> {
        loop {
            if self.head.is_none()
                && let Some(frame) = self.decoder.decode_frame()
            {
                return Ok(Some(frame));
            }
            match self.ws.recv().await {
                Some(Ok(Message::Binary(b))) => self.feed(&b)?,
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    async fn send_frame(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let framed = wacore::framing::encode_frame(payload, None)?;
        self.ws.send(Message::Binary(framed.into())).await?;
        Ok(())
    }
}

/// The transport ciphers and their counters.
struct Ciphers {
    read: NoiseCipher,
    write: NoiseCipher,
    read_ctr: u32,
    write_ctr: u32,
}

impl Ciphers {
    fn open(&mut self, frame: BytesMut) -> anyhow::Result<Vec<u8>> {
        let mut buf = frame.to_vec();
        self.read
            .decrypt_in_place_with_counter(self.read_ctr, &mut buf)
            .map_err(|e| anyhow::anyhow!("frame decrypt: {e}"))?;
        self.read_ctr = self
            .read_ctr
            .checked_add(1)
            .ok_or_else(|| anyhow::anyhow!("read counter exhausted"))?;
        Ok(buf)
    }

    fn seal(&mut self, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let out = self
            .write
            .encrypt_with_counter(self.write_ctr, plaintext)
            .map_err(|e| anyhow::anyhow!("frame encrypt: {e}"))?;
        self.write_ctr = self
            .write_ctr
            .checked_add(1)
            .ok_or_else(|| anyhow::anyhow!("write counter exhausted"))?;
        Ok(out)
    }
}

/// Serves one upgraded WebSocket until it closes: its login on the login
/// threads, the rest on the caller's runtime.
pub(crate) async fn serve(ws: WebSocket, sim: Arc<Sim>) {
    let id = sim.next_conn_id();
    let (tx, rx) = mpsc::unbounded_channel();
    {
        let mut g = sim.lock();
        if g.in_outage() {
            // Upgraded just before an outage began: it is one of the
            // connections the outage drops.
            g.refused += 1;
            drop(g);
            tracing::debug!(conn = id, "connection dropped: outage");
            return;
        }
        g.conns.insert(
            id,
            Conn {
                tx,
                registration: None,
                login: None,
                device: None,
                pending_link: None,
                ready: false,
                login_record: None,
                subscriptions: std::collections::HashMap::new(),
            },
        );
    }
    let wire = Wire::new(ws);
    let login = {
        let sim = sim.clone();
        async move {
            let mut wire = wire;
            let step = log_in(&mut wire, &sim, id, rx).await;
            (wire, step)
        }
    };
    let (mut wire, step) = match sim.login_threads.spawn(login).await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(conn = id, "the login of a connection failed: {e}");
            sim.remove_conn(id, DROPPED);
            return;
        }
    };
    let ended = match step {
        Ok(Step::Closed(cause)) => Ok(cause),
        Ok(Step::LoggedIn(mut link)) => {
            link.serve(&mut wire, &sim, id, None)
                .await
                .map(|served| match served {
                    Served::Closed(cause) => cause,
                    // Not without a login bound.
                    Served::LoginOver => CLOSED,
                })
        }
        Err(e) => Err(e),
    };
    let cause = match ended {
        Ok(cause) => {
            tracing::debug!(conn = id, cause, "connection closed");
            cause
        }
        Err(e) => {
            tracing::debug!(conn = id, "connection ended: {e:#}");
            CLOSED
        }
    };
    // Forgotten before the socket is closed: a client that reconnects as
    // soon as it sees the close never finds its old connection still
    // counted as logged in (that would be an overlap).
    sim.remove_conn(id, cause);
    drop(wire);
}

async fn handshake(wire: &mut Wire, sim: &Sim) -> anyhow::Result<Established> {
    let hello = wire
        .next_frame()
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed before hello"))?;
    match noise::read_client_hello(&sim.keys, &hello)? {
        HelloOutcome::Done(reply, est) => {
            wire.send_frame(&reply).await?;
            Ok(*est)
        }
        HelloOutcome::AwaitFinish(reply, st) => {
            wire.send_frame(&reply).await?;
            let finish = wire
                .next_frame()
                .await?
                .ok_or_else(|| anyhow::anyhow!("closed before finish"))?;
            st.read_client_finish(&finish)
        }
    }
}

/// Why a connection closed, as `GET /admin/logins` says: the client closed
/// it (or it broke, or went idle).
const CLOSED: &str = "closed";
/// The simulator dropped it without a goodbye (`/drop`, an outage, shutdown).
const DROPPED: &str = "dropped";

/// The cause a closing stream error names: its `<conflict type>`
/// (`replaced`, `device_removed`), else `"server"`.
fn close_cause(node: &Node) -> &'static str {
    let conflict = node
        .get_optional_child("conflict")
        .and_then(|n| n.attrs().optional_string("type").map(|t| t.into_owned()));
    match conflict.as_deref() {
        Some("replaced") => "replaced",
        Some("device_removed") => "device_removed",
        _ => "server",
    }
}

/// How a connection's login ended.
enum Step {
    /// It closed, for this reason.
    Closed(&'static str),
    /// It is logged in (or took too long): the rest of its life is served
    /// elsewhere.
    LoggedIn(Box<Link>),
}

/// Why [`Link::serve`] stopped.
enum Served {
    /// The connection closed, for this reason.
    Closed(&'static str),
    /// Its login is over.
    LoginOver,
}

/// The handshake, the opening stanzas and the frames of the login, up to
/// the answer to the client's key digest query (the last costly request of
/// a login) or the login threads' bound.
async fn log_in(
    wire: &mut Wire,
    sim: &Arc<Sim>,
    id: u64,
    rx: mpsc::UnboundedReceiver<Outbound>,
) -> anyhow::Result<Step> {
    let est = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(wire, sim))
        .await
        .map_err(|_| anyhow::anyhow!("handshake timed out"))??;
    let mut link = Box::new(Link {
        ciphers: Ciphers {
            read: est.read,
            write: est.write,
            read_ctr: 0,
            write_ctr: 0,
        },
        session: Session::new(sim.clone(), id),
        rx,
    });
    let opening = open_session(sim, id, &est.client_static, &est.payload, &mut link.session);
    for node in opening {
        send_node(wire, &mut link.ciphers, &node).await?;
    }
    if link.session.close {
        let _ = wire.ws.send(Message::Close(None)).await;
        return Ok(Step::Closed("server"));
    }
    match link
        .serve(wire, sim, id, Some(sim.login_threads.bound))
        .await?
    {
        Served::Closed(cause) => Ok(Step::Closed(cause)),
        Served::LoginOver => Ok(Step::LoggedIn(link)),
    }
}

/// Whether `node` is the client's key digest query.
fn is_digest_query(node: &wacore_binary::NodeRef<'_>) -> bool {
    node.tag == "iq"
        && node.attrs().optional_string("xmlns").as_deref() == Some("encrypt")
        && node.get_optional_child("digest").is_some()
}

/// An established connection: its ciphers, its stanza handler and its
/// outbound queue.
struct Link {
    ciphers: Ciphers,
    session: Session,
    rx: mpsc::UnboundedReceiver<Outbound>,
}

impl Link {
    /// Serves frames of connection `id` until it closes or, with a `login`
    /// bound, until its login is over: the key digest answered, or `login`
    /// passed.
    async fn serve(
        &mut self,
        wire: &mut Wire,
        sim: &Sim,
        id: u64,
        login: Option<Duration>,
    ) -> anyhow::Result<Served> {
        let Self {
            ciphers,
            session,
            rx,
        } = self;
        let over = async {
            match login {
                Some(bound) => tokio::time::sleep(bound).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(over);
        loop {
            tokio::select! {
                frame = tokio::time::timeout(IDLE_TIMEOUT, wire.next_frame()) => {
                    let Some(frame) = frame.map_err(|_| anyhow::anyhow!("idle timeout"))?? else {
                        return Ok(Served::Closed(CLOSED));
                    };
                    let plain = ciphers.open(frame)?;
                    let data = wacore_binary::util::unpack(&plain)?;
                    // Looked for only while logging in.
                    let mut login_over = false;
                    match wacore_binary::marshal::unmarshal_ref(&data) {
                        Ok(node) => {
                            login_over = login.is_some() && is_digest_query(&node);
                            session.handle(&node);
                        }
                        Err(e) => tracing::warn!(conn = id, "undecodable stanza: {e}"),
                    }
                    // What the stanza changed (a device linked, a contact
                    // blocked…) is on disk before the client hears the answer.
                    // A failed write is logged; the client is still answered.
                    let _ = sim.persist().await;
                    for node in session.take_out() {
                        send_node(wire, ciphers, &node).await?;
                    }
                    if session.close {
                        let _ = wire.ws.send(Message::Close(None)).await;
                        return Ok(Served::Closed("server"));
                    }
                    if login_over {
                        return Ok(Served::LoginOver);
                    }
                }
                cmd = rx.recv() => match cmd {
                    Some(Outbound::Node(node)) => send_node(wire, ciphers, &node).await?,
                    Some(Outbound::Close(node)) => {
                        let cause = node.as_ref().map_or("server", close_cause);
                        if let Some(node) = node {
                            send_node(wire, ciphers, &node).await?;
                        }
                        let _ = wire.ws.send(Message::Close(None)).await;
                        return Ok(Served::Closed(cause));
                    }
                    Some(Outbound::Drop) | None => return Ok(Served::Closed(DROPPED)),
                },
                () = &mut over => return Ok(Served::LoginOver),
            }
        }
    }
}

async fn send_node(wire: &mut Wire, ciphers: &mut Ciphers, node: &Node) -> anyhow::Result<()> {
    tracing::trace!("→ {}", crate::iq::show(&node.as_node_ref()));
    let plain = wacore_binary::marshal::marshal(node)?;
    let sealed = ciphers.seal(&plain)?;
    wire.send_frame(&sealed).await
}

fn be_u32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

/// Decides what a fresh connection is: a companion to pair (send it QR
/// refs) or a linked device logging in (check it, send `<success>`).
fn open_session(
    sim: &Sim,
    id: u64,
    client_static: &[u8; 32],
    payload: &waproto::whatsapp::ClientPayload,
    session: &mut Session,
) -> Vec<Node> {
    if let Some(reg) = payload.device_pairing_data.as_option() {
        let key = |v: &Option<Vec<u8>>| -> [u8; 32] {
            let mut out = [0u8; 32];
            if let Some(v) = v
                && v.len() == 32
            {
                out.copy_from_slice(v);
            }
            out
        };
        let platform = reg
            .device_props
            .as_deref()
            .and_then(|b| {
                <waproto::whatsapp::DeviceProps as buffa::Message>::decode_from_slice(b).ok()
            })
            .and_then(|p| p.os)
            .unwrap_or_else(|| "unknown".to_owned());
        let registration = Registration {
            noise_pub: *client_static,
            identity_pub: key(&reg.e_ident),
            registration_id: be_u32(reg.e_regid.as_deref().unwrap_or_default()),
            signed_pre_key: SignedPreKey {
                id: be_u32(reg.e_skey_id.as_deref().unwrap_or_default()),
                public: reg.e_skey_val.clone().unwrap_or_default(),
                signature: reg.e_skey_sig.clone().unwrap_or_default(),
            },
            platform,
        };
        let refs: Vec<String> = (0..6).map(|_| new_ref()).collect();
        {
            let mut g = sim.lock();
            if let Some(c) = g.conns.get_mut(&id) {
                c.registration = Some(registration);
            }
            for r in &refs {
                g.refs.insert(r.clone(), id);
            }
        }
        tracing::info!(conn = id, "unpaired companion connected; showing QR refs");
        let pair_device = NodeBuilder::new("iq")
            .attrs([
                ("from", "s.whatsapp.net".to_owned()),
                ("type", "set".to_owned()),
                ("id", sim.next_stanza_id()),
                ("xmlns", "md".to_owned()),
            ])
            .children([NodeBuilder::new("pair-device")
                .children(
                    refs.into_iter()
                        .map(|r| NodeBuilder::new("ref").bytes(r.into_bytes()).build()),
                )
                .build()])
            .build();
        return vec![pair_device];
    }

    let phone = payload.username.map(|u| u.to_string()).unwrap_or_default();
    let device = payload
        .device
        .and_then(|d| u16::try_from(d).ok())
        .unwrap_or(0);
    let lid = {
        let mut g = sim.lock();
        let known = g.accounts().get(&phone).and_then(|a| {
            a.devices
                .get(&device)
                .filter(|d| d.reg.noise_pub == *client_static)
                .map(|_| a.lid.clone())
        });
        if known.is_some() {
            // Counted while the older connections are still open: a second
            // login of the device before the first closed is an overlap.
            let others = g.count_login(id, (phone.clone(), device));
            if others > 0 {
                tracing::info!(
                    conn = id,
                    phone,
                    device,
                    others,
                    "device logged in while another connection of it is open; replacing it"
                );
            }
            // One connection per device: an older one is replaced, as on
            // WhatsApp (its client sees `StreamReplaced`).
            let me = (phone.clone(), device);
            let older = g.current_login.insert(me.clone(), id);
            if let Some(older) = older.filter(|older| *older != id)
                && let Some(c) = g.conns.get_mut(&older)
                && c.login.as_ref() == Some(&me)
            {
                c.login = None;
                let replaced = NodeBuilder::new("stream:error")
                    .children([NodeBuilder::new("conflict")
                        .attr("type", "replaced")
                        .build()])
                    .build();
                let _ = c.tx.send(Outbound::Close(Some(replaced)));
                g.replaced += 1;
            }
            if let Some(c) = g.conns.get_mut(&id) {
                c.login = Some(me);
            }
        }
        known
    };
    let Some(lid) = lid else {
        tracing::info!(conn = id, phone, device, "login refused: device not linked");
        session.close = true;
        return vec![
            NodeBuilder::new("failure")
                .attrs([("reason", "401"), ("location", "sim")])
                .build(),
        ];
    };
    tracing::info!(conn = id, phone, device, "device logged in");
    session.login(phone, device, lid.clone());
    vec![
        NodeBuilder::new("success")
            .attrs([
                ("t", wacore::time::now_secs().to_string()),
                ("location", "sim".to_owned()),
                ("lid", format!("{lid}:{device}@lid")),
                ("props", "1".to_owned()),
                ("abprops", "1".to_owned()),
            ])
            .build(),
    ]
}

fn new_ref() -> String {
    use base64::Engine as _;
    let bytes: [u8; 18] = rand_010::random();
    format!(
        "2@{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}
