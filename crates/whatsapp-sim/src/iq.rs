//! What the server answers to each stanza a logged-in (or pairing) client
//! sends. Add an IQ by adding an arm to [`Session::handle_iq`].

use std::sync::Arc;

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeRef};

use crate::phone;
use crate::state::{BlockedContact, Device, LinkedDevice, Outbound, Sim};
use crate::world::{Contact, FailMode, phone_digits};

/// The server's JID as it signs its stanzas.
const SERVER: &str = "s.whatsapp.net";

/// Renders a stanza for logs, bounded in size.
pub(crate) fn show(node: &NodeRef<'_>) -> String {
    let mut s = format!("<{}", node.tag);
    for (k, v) in node.attrs_iter() {
        s.push_str(&format!(" {}=\"{}\"", k.as_ref(), v.as_str()));
    }
    match node.children() {
        Some(children) if !children.is_empty() => {
            s.push('>');
            for c in children.iter().take(8) {
                s.push_str(&show(c));
            }
            s.push_str(&format!("</{}>", node.tag));
        }
        _ => match node.content_bytes() {
            Some(b) => s.push_str(&format!(">[{} bytes]</{}>", b.len(), node.tag)),
            None => s.push_str("/>"),
        },
    }
    if s.len() > 600 {
        let mut cut = 600;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn attr(node: &NodeRef<'_>, key: &str) -> Option<String> {
    node.get_attr(key).map(|v| v.as_str().into_owned())
}

fn first_child<'a, 'b>(node: &'b NodeRef<'a>) -> Option<&'b NodeRef<'a>> {
    node.children().and_then(|c| c.first())
}

/// `user@server` split, with any `:device` or `_agent` suffix dropped.
fn split_jid(jid: &str) -> Option<(&str, &str)> {
    let (user, server) = jid.split_once('@')?;
    let user = user.split(':').next().unwrap_or(user);
    let user = user.split('_').next().unwrap_or(user);
    Some((user, server))
}

fn result(id: &str, children: Vec<Node>) -> Node {
    let b = NodeBuilder::new("iq").attrs([("from", SERVER), ("type", "result"), ("id", id)]);
    if children.is_empty() {
        b.build()
    } else {
        b.children(children).build()
    }
}

fn error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attrs([("from", SERVER), ("type", "error"), ("id", id)])
        .children([NodeBuilder::new("error")
            .attrs([("code", code.to_string()), ("text", text.to_owned())])
            .build()])
        .build()
}

fn u24(v: u32) -> Vec<u8> {
    v.to_be_bytes()[1..].to_vec()
}

/// A person as the server knows them: from the world's contacts or from
/// the simulator's accounts.
#[derive(Debug, Clone)]
struct Person {
    phone: Option<String>,
    lid: Option<String>,
    contact: Option<Contact>,
    /// The account's linked device ids, when the person is an account.
    devices: Option<Vec<(u16, u32)>>,
    /// The account's signed key-index list and its timestamp, when it has
    /// companions.
    key_index_list: Option<(u64, Vec<u8>)>,
}

/// One connection's protocol state.
#[derive(Debug)]
pub(crate) struct Session {
    sim: Arc<Sim>,
    conn: u64,
    /// (phone, device, account LID) once logged in.
    login: Option<(String, u16, String)>,
    out: Vec<Node>,
    /// Set when the connection must close after `out` is sent.
    pub close: bool,
    offline_sent: bool,
}

impl Session {
    pub(crate) fn new(sim: Arc<Sim>, conn: u64) -> Self {
        Self {
            sim,
            conn,
            login: None,
            out: Vec::new(),
            close: false,
            offline_sent: false,
        }
    }

    pub(crate) fn login(&mut self, phone: String, device: u16, lid: String) {
        self.login = Some((phone, device, lid));
    }

    /// The phone number of the account with LID user `lid`: this
    /// connection's own without a search (every login asks for its
    /// primary phone's bundle by LID), any other by a scan of the accounts.
    fn phone_of_lid(&self, g: &crate::state::Inner, lid: &str) -> Option<String> {
        match &self.login {
            Some((phone, _, own)) if own == lid => Some(phone.clone()),
            _ => g.phone_of_lid(lid).map(str::to_owned),
        }
    }

    pub(crate) fn take_out(&mut self) -> Vec<Node> {
        std::mem::take(&mut self.out)
    }

    /// Handles one stanza from the client.
    pub(crate) fn handle(&mut self, node: &NodeRef<'_>) {
        tracing::trace!(conn = self.conn, "← {}", show(node));
        match node.tag.as_ref() {
            "iq" => self.handle_iq(node),
            "message" => {
                let me = self.me();
                let ack = me.and_then(|(phone, dev)| {
                    crate::groups::client_message(&self.sim, (&phone, dev), node).or_else(|| {
                        crate::messaging::client_message(&self.sim, (&phone, dev), node)
                    })
                });
                match ack {
                    Some(ack) => self.out.push(ack),
                    None => self.ack_like_server(node),
                }
            }
            "receipt" => {
                if let Some((phone, dev)) = self.me() {
                    crate::messaging::client_receipt(&self.sim, (&phone, dev), node);
                }
                self.ack_like_server(node);
            }
            "ack" => {
                if let Some((phone, dev)) = self.me() {
                    crate::messaging::client_ack(&self.sim, (&phone, dev), node);
                }
            }
            "notification" | "call" => self.ack_like_server(node),
            "presence" => {
                if let Some((phone, dev)) = self.me() {
                    let back =
                        crate::presence::client_presence(&self.sim, (&phone, dev), self.conn, node);
                    self.out.extend(back);
                }
            }
            "chatstate" => {
                if let Some((phone, dev)) = self.me() {
                    crate::presence::client_chatstate(&self.sim, (&phone, dev), node);
                }
            }
            "ib" => {}
            other => tracing::debug!(conn = self.conn, "ignoring <{other}>: {}", show(node)),
        }
    }

    /// Acknowledges a stanza like the server does, so the client stops
    /// resending it.
    fn ack_like_server(&mut self, node: &NodeRef<'_>) {
        {
            {
                // Acknowledge like the server does, so the client stops resending.
                if let Some(id) = attr(node, "id") {
                    let mut b = NodeBuilder::new("ack")
                        .attr("class", node.tag.as_ref().to_owned())
                        .attr("id", id)
                        .attr(
                            "from",
                            attr(node, "to").unwrap_or_else(|| SERVER.to_owned()),
                        );
                    if let Some(t) = attr(node, "type") {
                        b = b.attr("type", t);
                    }
                    self.out.push(b.build());
                }
            }
        }
    }

    fn handle_iq(&mut self, iq: &NodeRef<'_>) {
        let id = attr(iq, "id").unwrap_or_default();
        let ty = attr(iq, "type").unwrap_or_default();
        if ty == "result" || ty == "error" {
            self.on_response(&id, &ty, iq);
            return;
        }
        let xmlns = attr(iq, "xmlns").unwrap_or_default();
        let child = first_child(iq);
        let child_tag = child.map(|c| c.tag.as_ref().to_owned()).unwrap_or_default();
        let reply = match (xmlns.as_str(), ty.as_str(), child_tag.as_str()) {
            ("w:p", _, _) => Some(result(&id, vec![])),
            ("w:g2", _, _) => match self.me() {
                Some((phone, dev)) => {
                    Some(crate::groups::iq(&self.sim, (&phone, dev), self.conn, iq))
                }
                None => Some(error(&id, 401, "not-authorized")),
            },
            ("passive", "set", "active") => {
                let r = result(&id, vec![]);
                self.out.push(r);
                let queued = match self.me() {
                    Some((phone, dev)) => {
                        crate::messaging::ready(&self.sim, self.conn, &phone, dev)
                    }
                    None => Vec::new(),
                };
                if !self.offline_sent {
                    self.offline_sent = true;
                    self.out.push(
                        NodeBuilder::new("ib")
                            .attr("from", SERVER)
                            .children([NodeBuilder::new("offline").attr("count", "0").build()])
                            .build(),
                    );
                }
                // Messages that waited for this device go out live, after
                // the (empty) offline queue.
                self.out.extend(queued);
                None
            }
            ("passive", "set", _) => Some(result(&id, vec![])),
            ("encrypt", "get", "count") => Some(self.prekey_count(&id)),
            ("encrypt", "set", "rotate") => Some(self.rotate_signed_prekey(&id, iq)),
            ("encrypt", "set", _) => Some(self.upload_prekeys(&id, iq)),
            ("encrypt", "get", "digest") => Some(self.digest(&id)),
            ("encrypt", "get", "key") => Some(self.fetch_prekeys(&id, iq)),
            ("abt", "get", "props") => Some(result(
                &id,
                vec![
                    NodeBuilder::new("props")
                        .attrs([("protocol", "1"), ("hash", "sim"), ("refresh", "86400")])
                        .build(),
                ],
            )),
            ("w", "get", "props") => Some(result(
                &id,
                vec![
                    NodeBuilder::new("props")
                        .attrs([("protocol", "2"), ("hash", "sim")])
                        .build(),
                ],
            )),
            ("blocklist", "get", _) => Some(self.blocklist(&id)),
            ("blocklist", "set", "item") => child.and_then(|c| self.update_blocklist(&id, c)),
            ("privacy", "get", "privacy") => Some(privacy_settings(&id)),
            ("privacy", "set", _) => Some(result(&id, vec![])),
            ("usync", "get", "usync") => child.and_then(|c| self.usync(&id, c)),
            ("w:sync:app:state", "set", "sync") => child.map(|c| app_state_sync(&id, c)),
            ("w:profile:picture", "get", "picture") => child.and_then(|c| self.picture(&id, iq, c)),
            ("urn:xmpp:whatsapp:dirty", "set", _) => Some(result(&id, vec![])),
            ("md", "set", "remove-companion-device") => Some(self.remove_self(&id)),
            ("w:m", "set", "media_conn") => Some(result(
                &id,
                vec![
                    NodeBuilder::new("media_conn")
                        .attrs([
                            ("auth", "sim".to_owned()),
                            ("ttl", "3600".to_owned()),
                            ("auth_ttl", "3600".to_owned()),
                            ("max_buckets", "12".to_owned()),
                        ])
                        .children([NodeBuilder::new("host")
                            .attr("hostname", self.sim.media_host())
                            .build()])
                        .build(),
                ],
            )),
            ("md", "set", "link_code_companion_reg") => {
                child.map(|c| crate::pairing::link_code_iq(&self.sim, self.conn, &id, c))
            }
            _ => {
                tracing::warn!(
                    conn = self.conn,
                    "unhandled IQ, answering 501: {}",
                    show(iq)
                );
                Some(error(&id, 501, "feature-not-implemented"))
            }
        };
        if let Some(r) = reply {
            self.out.push(r);
        }
    }

    /// The client answered one of our IQs (pair-device, pair-success).
    fn on_response(&mut self, id: &str, ty: &str, iq: &NodeRef<'_>) {
        let mut g = self.sim.lock();
        let Some(conn) = g.conns.get_mut(&self.conn) else {
            return;
        };
        let Some(link) = conn.pending_link.take_if(|l| l.iq_id == id) else {
            return; // an ack of pair-device, or of a notification
        };
        let signed = iq
            .get_optional_child_by_tag(&["pair-device-sign", "device-identity"])
            .and_then(|n| n.content_bytes());
        let outcome = match (ty, signed) {
            ("result", Some(bytes)) => {
                phone::verify_device_signature(bytes, &link.reg.identity_pub)
            }
            ("result", None) => Err("pair-device-sign without device-identity".to_owned()),
            _ => Err(format!(
                "companion refused pair-success: {}",
                iq.get_optional_child("error")
                    .map(|e| show(e))
                    .unwrap_or_default()
            )),
        };
        conn.registration = None;
        let done = link.done;
        match outcome {
            Ok(()) => {
                let account = g.account_mut(&link.phone);
                account.devices.insert(
                    link.device,
                    Device {
                        id: link.device,
                        reg: link.reg,
                        key_index: link.key_index,
                        linked_at: wacore::time::now_secs(),
                        pre_keys: Default::default(),
                        key_shared: false,
                    },
                );
                let linked = LinkedDevice {
                    jid: format!("{}:{}@s.whatsapp.net", link.phone, link.device),
                    lid: format!("{}:{}@lid", account.lid, link.device),
                    device: link.device,
                };
                tracing::info!(conn = self.conn, jid = linked.jid, "companion linked");
                g.refs.retain(|_, c| *c != self.conn);
                if let Some(done) = done {
                    let _ = done.send(Ok(linked));
                }
                // The companion reconnects and logs in with its new identity.
                self.out
                    .push(NodeBuilder::new("stream:error").attr("code", "515").build());
                self.close = true;
            }
            Err(e) => {
                tracing::warn!(conn = self.conn, "pairing failed: {e}");
                if let Some(done) = done {
                    let _ = done.send(Err(e));
                }
            }
        }
    }

    fn me(&self) -> Option<(String, u16)> {
        self.login.as_ref().map(|(p, d, _)| (p.clone(), *d))
    }

    /// Reads this connection's device.
    fn with_device<R>(&self, f: impl FnOnce(&Device) -> R) -> Option<R> {
        let (phone, dev) = self.me()?;
        let g = self.sim.lock();
        g.accounts()
            .get(&phone)
            .and_then(|a| a.devices.get(&dev))
            .map(f)
    }

    /// Changes this connection's device (saved with the state).
    fn with_device_mut<R>(&self, f: impl FnOnce(&mut Device) -> R) -> Option<R> {
        let (phone, dev) = self.me()?;
        let mut g = self.sim.lock();
        if !g
            .accounts()
            .get(&phone)
            .is_some_and(|a| a.devices.contains_key(&dev))
        {
            return None;
        }
        g.accounts_mut()
            .get_mut(&phone)
            .and_then(|a| a.devices.get_mut(&dev))
            .map(f)
    }

    fn prekey_count(&self, id: &str) -> Node {
        let n = self.with_device(|d| d.pre_keys.len()).unwrap_or(0);
        result(
            id,
            vec![
                NodeBuilder::new("count")
                    .attr("value", n.to_string())
                    .build(),
            ],
        )
    }

    fn upload_prekeys(&self, id: &str, iq: &NodeRef<'_>) -> Node {
        let keys: Vec<(u32, Vec<u8>)> = iq
            .get_optional_child("list")
            .map(|l| {
                l.get_children_by_tag("key")
                    .filter_map(|k| {
                        let kid = k.get_optional_child("id")?.content_bytes()?;
                        let val = k.get_optional_child("value")?.content_bytes()?;
                        Some((be(kid), val.to_vec()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let skey = iq.get_optional_child("skey").and_then(parse_skey);
        let n = keys.len();
        let stored = self.with_device_mut(|d| {
            d.pre_keys.extend(keys);
            if let Some(s) = skey {
                d.reg.signed_pre_key = s;
            }
        });
        if stored.is_none() {
            return error(id, 401, "not-authorized");
        }
        tracing::debug!(conn = self.conn, "stored {n} pre-keys");
        self.share_app_state_key();
        result(id, vec![])
    }

    /// Once per new companion, right after it published its keys: the
    /// phone's app-state key share, a Signal `pkmsg` from device 0.
    fn share_app_state_key(&self) {
        let Some((phone, dev)) = self.me() else {
            return;
        };
        let job = {
            let mut g = self.sim.lock();
            let tx = g.conns.get(&self.conn).map(|c| c.tx.clone());
            let pending = g
                .accounts()
                .get(&phone)
                .and_then(|a| a.devices.get(&dev))
                .is_some_and(|d| !d.key_shared);
            if !pending {
                return; // shared already (or the device is gone)
            }
            let Some(account) = g.accounts_mut().get_mut(&phone) else {
                return;
            };
            let key_indexes: Vec<u32> = account.devices.values().map(|d| d.key_index).collect();
            let Some(device) = account.devices.get_mut(&dev).filter(|d| !d.key_shared) else {
                return;
            };
            device.key_shared = true;
            let one_time = device.pre_keys.pop_first();
            let device = device.clone();
            let identity = wacore::libsignal::protocol::KeyPair::new(
                account.identity.public_key,
                account.identity.private_key.clone(),
            );
            (
                tx,
                crate::signal::KeyShareJob {
                    phone: phone.clone(),
                    identity,
                    registration_id: account.registration_id,
                    device,
                    one_time,
                    app_key: account.app_key.clone(),
                    key_indexes,
                    stanza_id: self.sim.next_stanza_id(),
                },
            )
        };
        let (Some(tx), job) = job else {
            return;
        };
        let conn = self.conn;
        tokio::spawn(async move {
            match crate::signal::key_share_message(job).await {
                Ok(node) => {
                    let _ = tx.send(Outbound::Node(node));
                    tracing::debug!(conn, "sent the app-state key share");
                }
                Err(e) => tracing::warn!(conn, "could not encrypt the key share: {e:#}"),
            }
        });
    }

    fn rotate_signed_prekey(&self, id: &str, iq: &NodeRef<'_>) -> Node {
        let skey = iq
            .get_optional_child_by_tag(&["rotate", "skey"])
            .and_then(parse_skey);
        if let Some(s) = skey {
            self.with_device_mut(|d| d.reg.signed_pre_key = s);
        }
        result(id, vec![])
    }

    fn digest(&self, id: &str) -> Node {
        // Under the lock only what the answer needs: every client asks at
        // every login, and a copy of the device (its ~800 pre-keys, one
        // allocation each) was most of what this cost.
        let found = self.with_device(|d| {
            if d.pre_keys.is_empty() {
                return None;
            }
            let pubs: Vec<&[u8]> = d.pre_keys.values().map(Vec::as_slice).collect();
            let hash = wacore::prekeys::compute_key_bundle_digest(
                &d.reg.identity_pub,
                &d.reg.signed_pre_key.public,
                &d.reg.signed_pre_key.signature,
                &pubs,
            );
            let ids: Vec<u32> = d.pre_keys.keys().copied().collect();
            Some((
                d.reg.registration_id,
                d.reg.identity_pub.to_vec(),
                skey_node(d),
                ids,
                hash,
            ))
        });
        let Some(Some((registration, identity, skey, ids, hash))) = found else {
            return error(id, 404, "item-not-found");
        };
        let digest = NodeBuilder::new("digest")
            .children([
                NodeBuilder::new("registration")
                    .bytes(registration.to_be_bytes().to_vec())
                    .build(),
                NodeBuilder::new("type").bytes(vec![5]).build(),
                NodeBuilder::new("identity").bytes(identity).build(),
                skey,
                NodeBuilder::new("list")
                    .children(
                        ids.into_iter()
                            .map(|k| NodeBuilder::new("id").bytes(u24(k)).build()),
                    )
                    .build(),
                NodeBuilder::new("hash").bytes(hash).build(),
            ])
            .build();
        result(id, vec![digest])
    }

    /// Pre-key bundles of companion devices the simulator knows, and of the
    /// world's contacts (device 0). The accounts' phones (device 0) have no
    /// bundle here.
    fn fetch_prekeys(&self, id: &str, iq: &NodeRef<'_>) -> Node {
        let users: Vec<String> = iq
            .get_optional_child("key")
            .map(|k| {
                k.get_children_by_tag("user")
                    .filter_map(|u| attr(u, "jid"))
                    .collect()
            })
            .unwrap_or_default();
        let mut g = self.sim.lock();
        let mut out = Vec::new();
        for jid in users {
            let Some((user, server)) = split_jid(&jid) else {
                continue;
            };
            let device: u16 = jid
                .split_once(':')
                .and_then(|(_, r)| r.split('@').next())
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            let phone = if server == "lid" {
                self.phone_of_lid(&g, user)
            } else {
                Some(user.to_owned())
            };
            let known = phone.filter(|p| {
                g.accounts()
                    .get(p)
                    .is_some_and(|a| a.devices.contains_key(&device))
            });
            // A world contact's device 0: its own bundle.
            if known.is_none()
                && let Some(bundle) =
                    crate::messaging::contact_bundle(&mut g, &self.sim.world, &jid)
            {
                out.push(bundle);
                continue;
            }
            // Known devices only: handing out a one-time key is a change.
            let dev = known.and_then(|p| {
                g.accounts_mut()
                    .get_mut(&p)
                    .and_then(|a| a.devices.get_mut(&device))
            });
            let node = match dev {
                Some(d) => {
                    let mut children = vec![
                        NodeBuilder::new("registration")
                            .bytes(d.reg.registration_id.to_be_bytes().to_vec())
                            .build(),
                        NodeBuilder::new("type").bytes(vec![5]).build(),
                        NodeBuilder::new("identity")
                            .bytes(d.reg.identity_pub.to_vec())
                            .build(),
                        skey_node(d),
                    ];
                    // A one-time pre-key is handed out once.
                    if let Some((kid, val)) = d.pre_keys.pop_first() {
                        children.push(
                            NodeBuilder::new("key")
                                .children([
                                    NodeBuilder::new("id").bytes(u24(kid)).build(),
                                    NodeBuilder::new("value").bytes(val).build(),
                                ])
                                .build(),
                        );
                    }
                    NodeBuilder::new("user")
                        .attr("jid", jid.clone())
                        .children(children)
                        .build()
                }
                None => NodeBuilder::new("user")
                    .attr("jid", jid.clone())
                    .children([NodeBuilder::new("error")
                        .attrs([("code", "404"), ("text", "item-not-found")])
                        .build()])
                    .build(),
            };
            out.push(node);
        }
        result(id, vec![NodeBuilder::new("list").children(out).build()])
    }

    fn blocklist(&self, id: &str) -> Node {
        let Some((phone, _)) = self.me() else {
            return error(id, 401, "not-authorized");
        };
        let g = self.sim.lock();
        let items: Vec<Node> = g
            .accounts()
            .get(&phone)
            .map(|a| a.blocklist.values().map(blocked_item).collect())
            .unwrap_or_default();
        result(id, vec![NodeBuilder::new("list").children(items).build()])
    }

    fn update_blocklist(&self, id: &str, item: &NodeRef<'_>) -> Option<Node> {
        let Some((phone, _)) = self.me() else {
            return Some(error(id, 401, "not-authorized"));
        };
        let action = attr(item, "action").unwrap_or_default();
        let Some(jid) = attr(item, "jid") else {
            return Some(error(id, 400, "bad-request"));
        };
        let Some(person) = self.person(&jid) else {
            return Some(error(id, 400, "bad-request"));
        };
        match person.contact.as_ref().and_then(|c| c.fail) {
            Some(FailMode::Unavailable) => return Some(error(id, 503, "service-unavailable")),
            Some(FailMode::Timeout) => {
                // No answer: the client gives up on its own.
                tracing::info!(
                    conn = self.conn,
                    "not answering block of {jid} (fail=timeout)"
                );
                return None;
            }
            None => {}
        }
        let Some(lid) = person.lid.clone() else {
            // The server wants the LID to block someone.
            return Some(error(id, 400, "bad-request"));
        };
        let mut g = self.sim.lock();
        let account = g.account_mut(&phone);
        match action.as_str() {
            "block" => {
                account
                    .blocklist
                    .entry(lid.clone())
                    .or_insert_with(|| BlockedContact {
                        jid: format!("{lid}@lid"),
                        pn_jid: person.phone.as_ref().map(|p| format!("{p}@s.whatsapp.net")),
                        t: wacore::time::now_secs(),
                    });
            }
            "unblock" => {
                account.blocklist.remove(&lid);
            }
            _ => return Some(error(id, 400, "bad-request")),
        }
        Some(result(id, vec![]))
    }

    /// Who a JID names: a contact of the world, an account, or both.
    fn person(&self, jid: &str) -> Option<Person> {
        let (user, server) = split_jid(jid)?;
        let world = &self.sim.world;
        let g = self.sim.lock();
        let (phone, lid) = match server {
            "lid" => {
                let phone = world
                    .contact_by_lid(user)
                    .map(|c| c.user.clone())
                    .or_else(|| self.phone_of_lid(&g, user));
                (phone, Some(user.to_owned()))
            }
            "s.whatsapp.net" | "c.us" => {
                let phone = phone_digits(user)?;
                let lid = world
                    .contact(&phone)
                    .and_then(|c| c.lid.clone())
                    .or_else(|| g.accounts().get(&phone).map(|a| a.lid.clone()));
                (Some(phone), lid)
            }
            "g.us" => (Some(user.to_owned()), None),
            _ => return None,
        };
        let contact = phone.as_ref().and_then(|p| world.contact(p)).cloned();
        let account = phone.as_ref().and_then(|p| g.accounts().get(p));
        let devices = account.map(|a| {
            a.devices
                .values()
                .map(|d| (d.id, d.key_index))
                .collect::<Vec<_>>()
        });
        let key_index_list = account.filter(|a| !a.devices.is_empty()).map(|a| {
            let ts = a.devices.values().map(|d| d.linked_at).max().unwrap_or(0);
            let ts = u64::try_from(ts).unwrap_or(0);
            let valid = a.devices.values().map(|d| d.key_index).collect();
            (
                ts,
                phone::signed_key_index_list(&a.identity, a.raw_id, ts, valid),
            )
        });
        if contact.is_none() && devices.is_none() && server != "lid" {
            // Unknown phone number: not on WhatsApp.
            return Some(Person {
                phone,
                lid: None,
                contact: None,
                devices: None,
                key_index_list: None,
            });
        }
        Some(Person {
            phone,
            lid,
            contact,
            devices,
            key_index_list,
        })
    }

    fn picture(&self, id: &str, iq: &NodeRef<'_>, pic: &NodeRef<'_>) -> Option<Node> {
        let target = attr(iq, "target").unwrap_or_else(|| {
            self.login
                .as_ref()
                .map(|(p, _, _)| format!("{p}@s.whatsapp.net"))
                .unwrap_or_default()
        });
        let Some(person) = self.person(&target) else {
            return Some(error(id, 400, "bad-request"));
        };
        let Some(contact) = person.contact else {
            return Some(error(id, 404, "item-not-found"));
        };
        match contact.fail {
            Some(FailMode::Timeout) => {
                tracing::info!(
                    conn = self.conn,
                    "not answering picture of {target} (fail=timeout)"
                );
                return None;
            }
            Some(FailMode::Unavailable) => return Some(error(id, 503, "service-unavailable")),
            None => {}
        }
        if contact.picture_hidden {
            return Some(error(id, 401, "not-authorized"));
        }
        let Some(p) = contact.picture else {
            return Some(error(id, 404, "item-not-found"));
        };
        if attr(pic, "id").is_some_and(|known| known == p.id) {
            // The client has this one already.
            return Some(result(id, vec![NodeBuilder::new("picture").build()]));
        }
        let kind = attr(pic, "type").unwrap_or_else(|| "image".to_owned());
        let mut b = NodeBuilder::new("picture")
            .attr("id", p.id)
            .attr("type", kind)
            .attr("url", p.url);
        if let Some(dp) = p.direct_path {
            b = b.attr("direct_path", dp);
        }
        if let Some(h) = p.hash {
            b = b.attr("hash", h);
        }
        Some(result(id, vec![b.build()]))
    }

    fn usync(&self, id: &str, usync: &NodeRef<'_>) -> Option<Node> {
        let protocols: Vec<String> = usync
            .get_optional_child("query")
            .and_then(|q| q.children())
            .map(|c| c.iter().map(|p| p.tag.as_ref().to_owned()).collect())
            .unwrap_or_default();
        let users: Vec<(Option<String>, Option<String>)> = usync
            .get_optional_child("list")
            .map(|l| {
                l.get_children_by_tag("user")
                    .map(|u| {
                        (
                            attr(u, "jid"),
                            u.get_optional_child("contact")
                                .and_then(|c| c.content_as_string())
                                .map(|s| s.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut list = Vec::new();
        for (jid, contact_query) in users {
            let query_jid = match (&jid, &contact_query) {
                (Some(j), _) => j.clone(),
                (None, Some(c)) => match phone_digits(c) {
                    Some(p) => format!("{p}@s.whatsapp.net"),
                    None => continue,
                },
                (None, None) => continue,
            };
            let person = self.person(&query_jid);
            if person
                .as_ref()
                .and_then(|p| p.contact.as_ref())
                .is_some_and(|c| c.fail == Some(FailMode::Timeout))
            {
                tracing::info!(
                    conn = self.conn,
                    "not answering usync for {query_jid} (fail=timeout)"
                );
                return None;
            }
            if person
                .as_ref()
                .and_then(|p| p.contact.as_ref())
                .is_some_and(|c| c.fail == Some(FailMode::Unavailable))
            {
                return Some(error(id, 503, "service-unavailable"));
            }
            let known = person
                .as_ref()
                .is_some_and(|p| p.contact.is_some() || p.devices.is_some());
            let bare = split_jid(&query_jid)
                .map(|(u, s)| format!("{u}@{s}"))
                .unwrap_or(query_jid.clone());
            let mut children = Vec::new();
            for proto in &protocols {
                let node = match proto.as_str() {
                    "contact" => {
                        let mut b = NodeBuilder::new("contact")
                            .attr("type", if known { "in" } else { "out" });
                        if let Some(c) = &contact_query {
                            b = b.string_content(c.as_str());
                        }
                        Some(b.build())
                    }
                    "lid" => Some(match person.as_ref().and_then(|p| p.lid.clone()) {
                        Some(l) if known => NodeBuilder::new("lid")
                            .attr("val", format!("{l}@lid"))
                            .build(),
                        _ => NodeBuilder::new("lid").build(),
                    }),
                    "status" => Some(status_node(
                        person.as_ref().and_then(|p| p.contact.as_ref()),
                    )),
                    "devices" => Some(devices_node(person.as_ref(), known)),
                    "picture" => person
                        .as_ref()
                        .and_then(|p| p.contact.as_ref())
                        .filter(|c| !c.picture_hidden)
                        .and_then(|c| c.picture.as_ref())
                        .and_then(|p| p.id.parse::<u64>().ok())
                        .map(|pid| {
                            NodeBuilder::new("picture")
                                .attr("id", pid.to_string())
                                .build()
                        }),
                    "business" => None,
                    _ => None,
                };
                if let Some(n) = node {
                    children.push(n);
                }
            }
            let mut user = NodeBuilder::new("user").attr("jid", bare.clone());
            // A `lidOnly` contact's number is never disclosed.
            let lid_only = person
                .as_ref()
                .and_then(|p| p.contact.as_ref())
                .is_some_and(|c| c.lid_only);
            if bare.ends_with("@lid")
                && !lid_only
                && let Some(p) = person.as_ref().and_then(|p| p.phone.clone())
            {
                user = user.attr("pn_jid", format!("{p}@s.whatsapp.net"));
            }
            list.push(user.children(children).build());
        }
        let mut head = NodeBuilder::new("usync");
        for key in ["sid", "mode", "context", "index", "last"] {
            if let Some(v) = attr(usync, key) {
                head = head.attr(key, v);
            }
        }
        let usync_node = head
            .children([NodeBuilder::new("list").children(list).build()])
            .build();
        Some(result(id, vec![usync_node]))
    }

    /// The companion logs itself out (`Client::logout`).
    fn remove_self(&mut self, id: &str) -> Node {
        if let Some((phone, dev)) = self.me() {
            let mut g = self.sim.lock();
            if let Some(a) = g.accounts_mut().get_mut(&phone) {
                a.devices.remove(&dev);
            }
            tracing::info!(conn = self.conn, "{phone}:{dev} unlinked itself");
        }
        result(id, vec![])
    }
}

fn be(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

fn parse_skey(node: &NodeRef<'_>) -> Option<crate::state::SignedPreKey> {
    Some(crate::state::SignedPreKey {
        id: be(node.get_optional_child("id")?.content_bytes()?),
        public: node.get_optional_child("value")?.content_bytes()?.to_vec(),
        signature: node
            .get_optional_child("signature")?
            .content_bytes()?
            .to_vec(),
    })
}

fn skey_node(d: &Device) -> Node {
    NodeBuilder::new("skey")
        .children([
            NodeBuilder::new("id")
                .bytes(u24(d.reg.signed_pre_key.id))
                .build(),
            NodeBuilder::new("value")
                .bytes(d.reg.signed_pre_key.public.clone())
                .build(),
            NodeBuilder::new("signature")
                .bytes(d.reg.signed_pre_key.signature.clone())
                .build(),
        ])
        .build()
}

fn blocked_item(b: &BlockedContact) -> Node {
    let mut n = NodeBuilder::new("item")
        .attr("jid", b.jid.clone())
        .attr("t", b.t.to_string());
    if let Some(pn) = &b.pn_jid {
        n = n.attr("pn_jid", pn.clone());
    }
    n.build()
}

fn status_node(contact: Option<&Contact>) -> Node {
    let err = |code: &str, text: &str| {
        NodeBuilder::new("status")
            .children([NodeBuilder::new("error")
                .attrs([("code", code), ("text", text)])
                .build()])
            .build()
    };
    let Some(c) = contact else {
        return err("404", "item-not-found");
    };
    if c.about_hidden {
        return err("401", "not-authorized");
    }
    match &c.about {
        Some(a) => {
            let mut b = NodeBuilder::new("status");
            if let Some(t) = a.set_at {
                b = b.attr("t", t.to_string());
            }
            b.string_content(a.text.as_str()).build()
        }
        None => err("404", "item-not-found"),
    }
}

fn devices_node(person: Option<&Person>, known: bool) -> Node {
    let mut devices = Vec::new();
    if known {
        devices.push(NodeBuilder::new("device").attr("id", "0").build());
        if let Some(list) = person.and_then(|p| p.devices.as_ref()) {
            for (dev, key_index) in list {
                devices.push(
                    NodeBuilder::new("device")
                        .attr("id", dev.to_string())
                        .attr("key-index", key_index.to_string())
                        .build(),
                );
            }
        }
    }
    let mut children = vec![NodeBuilder::new("device-list").children(devices).build()];
    if known && let Some((ts, signed)) = person.and_then(|p| p.key_index_list.clone()) {
        children.push(
            NodeBuilder::new("key-index-list")
                .attr("ts", ts.to_string())
                .bytes(signed)
                .build(),
        );
    }
    NodeBuilder::new("devices").children(children).build()
}

fn privacy_settings(id: &str) -> Node {
    let cats = [
        ("last", "all"),
        ("online", "all"),
        ("profile", "all"),
        ("status", "all"),
        ("groupadd", "all"),
        ("readreceipts", "all"),
        ("calladd", "all"),
        ("messages", "all"),
        ("defense", "off"),
    ];
    result(
        id,
        vec![
            NodeBuilder::new("privacy")
                .children(cats.iter().map(|(n, v)| {
                    NodeBuilder::new("category")
                        .attrs([("name", *n), ("value", *v)])
                        .build()
                }))
                .build(),
        ],
    )
}

/// App-state sync: every collection is empty on the simulator.
fn app_state_sync(id: &str, sync: &NodeRef<'_>) -> Node {
    let collections: Vec<Node> = sync
        .get_children_by_tag("collection")
        .filter_map(|c| attr(c, "name"))
        .map(|name| {
            NodeBuilder::new("collection")
                .attrs([("name", name), ("version", "0".to_owned())])
                .build()
        })
        .collect();
    result(
        id,
        vec![NodeBuilder::new("sync").children(collections).build()],
    )
}

/// Sends `node` to every live connection of `phone` (all devices).
pub(crate) fn broadcast(sim: &Sim, phone: &str, node: impl Fn() -> Outbound) -> usize {
    let g = sim.lock();
    let mut n = 0;
    for c in g.conns.values() {
        if c.login.as_ref().is_some_and(|(p, _)| p == phone) && c.tx.send(node()).is_ok() {
            n += 1;
        }
    }
    n
}
