//! Groups as WhatsApp has them: world contacts and accounts as members,
//! admins and a superadmin (the creator), LID addressing, settings
//! (announcement, locked, membership approval), invite codes and
//! membership requests, and sender keys both ways.
//!
//! - **The `w:g2` IQs** whatsapp-rust sends: create, query, participating,
//!   add/remove/promote/demote, subject, description, settings, invite
//!   (get, revoke, join by code), leave, membership requests and their
//!   answers. Admin-only ones answer `403` to a member, anything on a
//!   group the account is not in `404`.
//! - **Gateway → group.** The client's `<message to=group>` carries the
//!   sender-key distribution for devices that lack it (pairwise, in
//!   `<participants>`) and one `skmsg`: every member contact processes its
//!   copy of the distribution and decrypts the `skmsg` with it (logged per
//!   member), then receipts it (`participant` = the member).
//! - **Member → group** (admin API). The contact encrypts with its own
//!   sender key; each account device that lacks the key gets the
//!   distribution pairwise beside the `skmsg`. Other member contacts
//!   decrypt it too.
//! - **Changes by contacts** (admin API) reach the account members' devices
//!   as `w:gp2` notifications; a change an account's device made reaches
//!   its other devices.
//!
//! Everything but the connections is saved in the state file (in
//! [`crate::messaging::Messaging`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use buffa::Message as _;
use futures_util::FutureExt as _;
use serde::{Deserialize, Serialize};
use wacore::libsignal::protocol::{
    SenderKeyDistributionMessage, SenderKeyName, SenderKeyRecord, SenderKeyStore,
    SignalProtocolError, create_sender_key_distribution_message, group_decrypt, group_encrypt,
    process_sender_key_distribution_message,
};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeRef};
use waproto::whatsapp as wa;

use crate::admin::AdminError;
use crate::contact::{ContactUser, peer_key};
use crate::messaging::{self, Pending, split_jid};
use crate::persist::B64;
use crate::state::{Account, Inner, Outbound, Sim};
use crate::world::{World, phone_digits};

/// A member's standing in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Member,
    Admin,
    Superadmin,
}

impl Role {
    fn is_admin(self) -> bool {
        self != Role::Member
    }
}

/// A member: a world contact or an account, by phone number.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Member {
    phone: String,
    role: Role,
}

/// Someone who asked to join (membership approval on).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Request {
    phone: String,
    t: i64,
}

/// A message a member contact decrypted in the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Received {
    id: String,
    /// The phone number of the member who wrote it.
    from: String,
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    /// A reaction's: the message it reacts to.
    #[serde(default)]
    target: Option<String>,
    /// A reply's: the message it quotes.
    #[serde(default)]
    quoted: Option<String>,
    at: String,
}

impl Received {
    /// The log entry of `msg`, summarized as `entry`, written by `from`.
    fn new(entry: messaging::LoggedMessage, from: &str, msg: &wa::Message) -> Self {
        let target = msg
            .reaction_message
            .as_option()
            .and_then(|r| r.key.as_option())
            .and_then(|k| k.id.clone());
        Self {
            id: entry.id,
            from: from.to_owned(),
            kind: entry.kind,
            text: entry.text.or(entry.caption),
            target,
            quoted: messaging::quoted_id(msg),
            at: entry.at,
        }
    }
}

/// A receipt an account's device sent for a member's group message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AccountReceipt {
    id: String,
    /// `delivered` or `read`.
    #[serde(rename = "type")]
    kind: String,
    at: String,
}

/// A group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Group {
    /// The user part of its JID (`{id}@g.us`).
    id: String,
    subject: String,
    subject_t: i64,
    /// Phone of who set the subject.
    subject_by: String,
    description: Option<String>,
    description_id: Option<String>,
    /// Phone of the creator.
    creator: String,
    created: i64,
    members: Vec<Member>,
    #[serde(default)]
    announce: bool,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    approval: bool,
    invite: String,
    #[serde(default)]
    requests: Vec<Request>,
    /// `"{holder}/{sender}"` → the sender-key record the member contact
    /// `holder` keeps of `sender` (an account device's peer key or a member
    /// contact's phone; a contact's own key is `"{phone}/{phone}"`).
    #[serde(default)]
    keys: BTreeMap<String, B64>,
    /// `"{contact}>{peer}"`: the contact's sender key reached that account
    /// device.
    #[serde(default)]
    distributed: BTreeSet<String>,
    /// Member phone → what it decrypted, oldest first.
    #[serde(default)]
    received: BTreeMap<String, Vec<Received>>,
    /// Member phone → the receipts the account's devices sent for its
    /// messages, oldest first, one per (id, type).
    #[serde(default)]
    receipts: BTreeMap<String, Vec<AccountReceipt>>,
}

impl Group {
    fn jid(&self) -> String {
        format!("{}@g.us", self.id)
    }

    fn member(&self, phone: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.phone == phone)
    }

    fn is_admin(&self, phone: &str) -> bool {
        self.member(phone).is_some_and(|m| m.role.is_admin())
    }
}

/// A person as groups show them: its LID, and its number when disclosed.
#[derive(Debug, Clone)]
struct Person {
    phone: String,
    lid: String,
    /// `false` for a `lidOnly` contact.
    disclosed: bool,
    name: Option<String>,
}

impl Person {
    fn lid_jid(&self) -> String {
        format!("{}@lid", self.lid)
    }

    fn pn_jid(&self) -> Option<String> {
        self.disclosed
            .then(|| format!("{}@s.whatsapp.net", self.phone))
    }

    /// `<participant jid=LID phone_number=PN type=…>`.
    fn node(&self, tag: &'static str, role: Option<Role>) -> Node {
        let mut b = NodeBuilder::new(tag).attr("jid", self.lid_jid());
        if let Some(pn) = self.pn_jid() {
            b = b.attr("phone_number", pn);
        }
        match role {
            Some(Role::Admin) => b = b.attr("type", "admin"),
            Some(Role::Superadmin) => b = b.attr("type", "superadmin"),
            _ => {}
        }
        b.build()
    }
}

/// The person with this phone number: a world contact or an account.
fn person(world: &World, accounts: &BTreeMap<String, Account>, phone: &str) -> Option<Person> {
    if let Some(c) = world.contact(phone).filter(|c| !c.is_group) {
        return Some(Person {
            phone: phone.to_owned(),
            lid: c.lid.clone()?,
            disclosed: !c.lid_only,
            name: c.push_name.clone(),
        });
    }
    accounts.get(phone).map(|a| Person {
        phone: phone.to_owned(),
        lid: a.lid.clone(),
        disclosed: true,
        name: a.push_name.clone(),
    })
}

/// The phone number of the person a JID names (by number or LID), if the
/// world or an account knows them.
fn phone_of(world: &World, accounts: &BTreeMap<String, Account>, jid: &str) -> Option<String> {
    let (user, server, _) = split_jid(jid)?;
    match server {
        "lid" => world
            .contact_by_lid(user)
            .filter(|c| !c.is_group)
            .map(|c| c.user.clone())
            .or_else(|| {
                accounts
                    .values()
                    .find(|a| a.lid == user)
                    .map(|a| a.phone.clone())
            }),
        "s.whatsapp.net" | "c.us" => {
            let phone = phone_digits(user)?;
            person(world, accounts, &phone).map(|p| p.phone)
        }
        _ => None,
    }
}

/// The group id of a `…@g.us` JID.
fn group_id(jid: &str) -> Option<&str> {
    let id = jid.strip_suffix("@g.us")?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'-')).then_some(id)
}

/// `<group …>` as the query and create answers carry it.
fn group_node(world: &World, accounts: &BTreeMap<String, Account>, g: &Group) -> Node {
    let who = |phone: &str| person(world, accounts, phone);
    let mut b = NodeBuilder::new("group")
        .attr("id", g.id.clone())
        .attr("subject", g.subject.clone())
        .attr("s_t", g.subject_t.to_string())
        .attr("creation", g.created.to_string())
        .attr("addressing_mode", "lid")
        .attr("size", g.members.len().to_string());
    if let Some(p) = who(&g.subject_by) {
        b = b.attr("s_o", p.lid_jid());
    }
    if let Some(p) = who(&g.creator) {
        b = b.attr("creator", p.lid_jid());
        if let Some(pn) = p.pn_jid() {
            b = b.attr("creator_pn", pn);
        }
    }
    let mut children: Vec<Node> = g
        .members
        .iter()
        .filter_map(|m| who(&m.phone).map(|p| p.node("participant", Some(m.role))))
        .collect();
    if let Some(d) = &g.description {
        let mut desc = NodeBuilder::new("description");
        if let Some(id) = &g.description_id {
            desc = desc.attr("id", id.clone());
        }
        children.push(
            desc.children([NodeBuilder::new("body").string_content(d.as_str()).build()])
                .build(),
        );
    }
    if g.announce {
        children.push(NodeBuilder::new("announcement").build());
    }
    if g.locked {
        children.push(NodeBuilder::new("locked").build());
    }
    if g.approval {
        children.push(
            NodeBuilder::new("membership_approval_mode")
                .children([NodeBuilder::new("group_join").attr("state", "on").build()])
                .build(),
        );
    }
    b.children(children).build()
}

fn random_digits(n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rand_010::random::<u8>() % 10))
        .collect()
}

fn new_invite_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..22)
        .map(|_| char::from(ALPHABET[usize::from(rand_010::random::<u8>()) % ALPHABET.len()]))
        .collect()
}

fn new_group(creator: &str, subject: String, members: Vec<Member>) -> Group {
    let now = wacore::time::now_secs();
    Group {
        id: format!("120363{}", random_digits(12)),
        subject,
        subject_t: now,
        subject_by: creator.to_owned(),
        description: None,
        description_id: None,
        creator: creator.to_owned(),
        created: now,
        members,
        announce: false,
        locked: false,
        approval: false,
        invite: new_invite_code(),
        requests: Vec::new(),
        keys: BTreeMap::new(),
        distributed: BTreeSet::new(),
        received: BTreeMap::new(),
        receipts: BTreeMap::new(),
    }
}

// ------------------------------------------------------------ sender keys

/// The sender-key records of one group, seen by one member contact.
struct Keys<'a> {
    map: &'a mut BTreeMap<String, B64>,
    holder: &'a str,
}

impl Keys<'_> {
    fn key(&self, name: &SenderKeyName) -> String {
        format!("{}/{}", self.holder, name.sender_id())
    }
}

#[async_trait::async_trait]
impl SenderKeyStore for Keys<'_> {
    async fn store_sender_key(
        &mut self,
        name: &SenderKeyName,
        record: SenderKeyRecord,
    ) -> Result<(), SignalProtocolError> {
        let key = self.key(name);
        self.map.insert(key, B64(record.serialize()?));
        Ok(())
    }

    async fn load_sender_key(
        &self,
        name: &SenderKeyName,
    ) -> Result<Option<SenderKeyRecord>, SignalProtocolError> {
        match self.map.get(&self.key(name)) {
            Some(b) => {
                let mut record = SenderKeyRecord::deserialize(&b.0)?;
                // Saved right after each use (state lock, then the state
                // file before the ciphertext goes out): nothing to lease.
                record.waive_counter_lease()?;
                Ok(Some(record))
            }
            None => Ok(None),
        }
    }
}

/// Runs an in-memory libsignal future (every store here answers at once).
fn run<T>(
    fut: impl std::future::Future<Output = Result<T, SignalProtocolError>>,
) -> anyhow::Result<T> {
    match fut.now_or_never() {
        Some(r) => r.map_err(|e| anyhow::anyhow!("{e}")),
        None => Err(anyhow::anyhow!("signal operation did not complete")),
    }
}

/// `holder` takes in `sender`'s distribution message.
fn take_distribution(g: &mut Group, holder: &str, sender: &str, skdm: &[u8]) -> anyhow::Result<()> {
    let name = SenderKeyName::new(g.jid(), sender.to_owned());
    let skdm = SenderKeyDistributionMessage::try_from(skdm).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut keys = Keys {
        map: &mut g.keys,
        holder,
    };
    run(process_sender_key_distribution_message(
        &name, &skdm, &mut keys,
    ))
}

/// `holder` decrypts `sender`'s `skmsg`: the padded plaintext.
fn open(g: &mut Group, holder: &str, sender: &str, skmsg: &[u8]) -> anyhow::Result<Vec<u8>> {
    let name = SenderKeyName::new(g.jid(), sender.to_owned());
    let mut keys = Keys {
        map: &mut g.keys,
        holder,
    };
    run(group_decrypt(skmsg, &mut keys, &name))
}

/// The contact `phone`'s own sender key in the group: its distribution
/// message (the key made on first use) and `plaintext` encrypted with it.
fn seal(g: &mut Group, phone: &str, plaintext: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let name = SenderKeyName::new(g.jid(), phone.to_owned());
    let mut keys = Keys {
        map: &mut g.keys,
        holder: phone,
    };
    let mut rng = rand_010::rng();
    let skdm = run(create_sender_key_distribution_message(
        &name, &mut keys, &mut rng,
    ))?;
    let skmsg = run(group_encrypt(&mut keys, &name, plaintext, &mut rng))?;
    Ok((skdm.serialized().to_vec(), skmsg.serialized().to_vec()))
}

fn log_received(g: &mut Group, holder: &str, entry: Received) {
    let log = g.received.entry(holder.to_owned()).or_default();
    if !log
        .iter()
        .any(|r| r.id == entry.id && r.kind == entry.kind && r.text == entry.text)
    {
        log.push(entry);
    }
}

// ------------------------------------------------------- notifications

/// A `w:gp2` notification of `actions` by `actor`, to every connection of
/// the accounts `to` but `skip` (the connection that made the change).
fn notify(
    sim: &Sim,
    g: &Inner,
    group: &str,
    actor: Option<&Person>,
    actions: Vec<Node>,
    to: &[String],
    skip: Option<u64>,
) {
    let mut b = NodeBuilder::new("notification")
        .attr("from", format!("{group}@g.us"))
        .attr("type", "w:gp2")
        .attr("id", sim.next_stanza_id())
        .attr("t", wacore::time::now_secs().to_string())
        .attr("addressing_mode", "lid");
    if let Some(a) = actor {
        b = b.attr("participant", a.lid_jid());
        if let Some(pn) = a.pn_jid() {
            b = b.attr("participant_pn", pn);
        }
        if let Some(n) = &a.name {
            b = b.attr("notify", n.clone());
        }
    }
    let node = b.children(actions).build();
    for (id, c) in &g.conns {
        if Some(*id) == skip {
            continue;
        }
        if c.login.as_ref().is_some_and(|(p, _)| to.contains(p)) {
            let _ = c.tx.send(Outbound::Node(node.clone()));
        }
    }
}

/// The account members of a group.
fn account_members(g: &Group, accounts: &BTreeMap<String, Account>) -> Vec<String> {
    g.members
        .iter()
        .filter(|m| accounts.contains_key(&m.phone))
        .map(|m| m.phone.clone())
        .collect()
}

/// The tag of a membership action (`add` for anything unknown).
fn membership_tag(action: &str) -> &'static str {
    match action {
        "remove" => "remove",
        "promote" => "promote",
        "demote" => "demote",
        _ => "add",
    }
}

/// `<{action}><participant …/>…</{action}>`.
fn participants_action(
    world: &World,
    accounts: &BTreeMap<String, Account>,
    action: &str,
    phones: &[String],
) -> Node {
    NodeBuilder::new(membership_tag(action))
        .children(
            phones
                .iter()
                .filter_map(|p| person(world, accounts, p))
                .map(|p| p.node("participant", None)),
        )
        .build()
}

// ------------------------------------------------------------- the IQs

fn result(id: &str, children: Vec<Node>) -> Node {
    let b = NodeBuilder::new("iq").attrs([("from", "g.us"), ("type", "result"), ("id", id)]);
    if children.is_empty() {
        b.build()
    } else {
        b.children(children).build()
    }
}

fn error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attrs([("from", "g.us"), ("type", "error"), ("id", id)])
        .children([NodeBuilder::new("error")
            .attrs([("code", code.to_string()), ("text", text.to_owned())])
            .build()])
        .build()
}

fn attr(node: &NodeRef<'_>, key: &str) -> Option<String> {
    node.get_attr(key).map(|v| v.as_str().into_owned())
}

/// The JIDs of the `<participant jid>` children of `node`.
fn participant_jids(node: &NodeRef<'_>) -> Vec<String> {
    node.get_children_by_tag("participant")
        .filter_map(|p| attr(p, "jid"))
        .collect()
}

/// One connection's IQ, and who else to tell.
struct Call<'a> {
    sim: &'a Sim,
    phone: &'a str,
    conn: u64,
    id: &'a str,
}

/// A `w:g2` IQ from the account `me` on connection `conn`: the answer.
pub(crate) fn iq(sim: &Sim, me: (&str, u16), conn: u64, iq: &NodeRef<'_>) -> Node {
    let id = attr(iq, "id").unwrap_or_default();
    let call = Call {
        sim,
        phone: me.0,
        conn,
        id: &id,
    };
    let ty = attr(iq, "type").unwrap_or_default();
    let to = attr(iq, "to").unwrap_or_default();
    let Some(child) = iq.children().and_then(|c| c.first()) else {
        return error(&id, 400, "bad-request");
    };
    let tag = child.tag.as_ref();
    match (group_id(&to), ty.as_str(), tag) {
        (None, "get", "participating") => call.participating(),
        (None, "set", "create") => call.create(child),
        (None, "set", "leave") => call.leave(child),
        (None, "set", "invite") => call.join(child),
        (None, "get", "invite") => call.invite_info(child),
        (Some(gid), _, _) => call.on_group(gid, &ty, child),
        _ => {
            tracing::warn!(conn, "unhandled w:g2 IQ: {}", crate::iq::show(iq));
            error(&id, 501, "feature-not-implemented")
        }
    }
}

impl Call<'_> {
    fn participating(&self) -> Node {
        let g = self.sim.lock();
        let groups: Vec<Node> = g
            .messaging()
            .groups
            .values()
            .filter(|grp| grp.member(self.phone).is_some())
            .map(|grp| group_node(&self.sim.world, g.accounts(), grp))
            .collect();
        result(
            self.id,
            vec![NodeBuilder::new("groups").children(groups).build()],
        )
    }

    fn create(&self, create: &NodeRef<'_>) -> Node {
        let subject = attr(create, "subject").unwrap_or_default();
        if subject.trim().is_empty() {
            return error(self.id, 400, "bad-request");
        }
        let mut g = self.sim.lock();
        let mut members = vec![Member {
            phone: self.phone.to_owned(),
            role: Role::Superadmin,
        }];
        for jid in participant_jids(create) {
            // Someone not on WhatsApp is left out.
            if let Some(phone) = phone_of(&self.sim.world, g.accounts(), &jid)
                && !members.iter().any(|m| m.phone == phone)
            {
                members.push(Member {
                    phone,
                    role: Role::Member,
                });
            }
        }
        let mut grp = new_group(self.phone, subject, members);
        if let Some(d) = create.get_optional_child("description")
            && let Some(body) = d
                .get_optional_child("body")
                .and_then(|b| b.content_as_string())
        {
            grp.description = Some(body.to_string());
            grp.description_id = attr(d, "id");
        }
        let node = group_node(&self.sim.world, g.accounts(), &grp);
        let gid = grp.id.clone();
        let to = account_members(&grp, g.accounts());
        g.messaging_mut().groups.insert(gid.clone(), grp);
        let actor = person(&self.sim.world, g.accounts(), self.phone);
        let action = NodeBuilder::new("create").children([node.clone()]).build();
        notify(
            self.sim,
            &g,
            &gid,
            actor.as_ref(),
            vec![action],
            &to,
            Some(self.conn),
        );
        tracing::info!(group = gid, by = self.phone, "group created");
        result(self.id, vec![node])
    }

    fn leave(&self, leave: &NodeRef<'_>) -> Node {
        let mut g = self.sim.lock();
        let mut left = Vec::new();
        for gnode in leave.get_children_by_tag("group") {
            let Some(gid) = attr(gnode, "id").and_then(|j| {
                group_id(&j)
                    .map(str::to_owned)
                    .or_else(|| Some(j).filter(|j| j.bytes().all(|b| b.is_ascii_digit())))
            }) else {
                continue;
            };
            let Some(grp) = g.messaging_mut().groups.get_mut(&gid) else {
                continue;
            };
            let before = grp.members.len();
            grp.members.retain(|m| m.phone != self.phone);
            if grp.members.len() != before {
                left.push(gid);
            }
        }
        let actor = person(&self.sim.world, g.accounts(), self.phone);
        for gid in &left {
            if let Some(actor) = &actor {
                let mut to = g
                    .messaging()
                    .groups
                    .get(gid)
                    .map(|grp| account_members(grp, g.accounts()))
                    .unwrap_or_default();
                to.push(self.phone.to_owned());
                let action = NodeBuilder::new("remove")
                    .children([actor.node("participant", None)])
                    .build();
                notify(
                    self.sim,
                    &g,
                    gid,
                    Some(actor),
                    vec![action],
                    &to,
                    Some(self.conn),
                );
            }
        }
        if left.is_empty() {
            return error(self.id, 404, "item-not-found");
        }
        result(self.id, vec![])
    }

    fn find_by_code(g: &Inner, code: &str) -> Option<String> {
        g.messaging()
            .groups
            .values()
            .find(|grp| grp.invite == code)
            .map(|grp| grp.id.clone())
    }

    fn invite_info(&self, invite: &NodeRef<'_>) -> Node {
        let code = attr(invite, "code").unwrap_or_default();
        let g = self.sim.lock();
        match Self::find_by_code(&g, &code).and_then(|gid| g.messaging().groups.get(&gid)) {
            Some(grp) => result(
                self.id,
                vec![group_node(&self.sim.world, g.accounts(), grp)],
            ),
            None => error(self.id, 404, "item-not-found"),
        }
    }

    fn join(&self, invite: &NodeRef<'_>) -> Node {
        let code = attr(invite, "code").unwrap_or_default();
        let mut g = self.sim.lock();
        let Some(gid) = Self::find_by_code(&g, &code) else {
            return error(self.id, 404, "item-not-found");
        };
        let jid = format!("{gid}@g.us");
        let actor = person(&self.sim.world, g.accounts(), self.phone);
        let Some(grp) = g.messaging_mut().groups.get_mut(&gid) else {
            return error(self.id, 404, "item-not-found");
        };
        if grp.member(self.phone).is_some() {
            return error(self.id, 304, "already-member");
        }
        if grp.approval {
            if !grp.requests.iter().any(|r| r.phone == self.phone) {
                grp.requests.push(Request {
                    phone: self.phone.to_owned(),
                    t: wacore::time::now_secs(),
                });
            }
            return result(
                self.id,
                vec![
                    NodeBuilder::new("membership_approval_request")
                        .attr("jid", jid)
                        .build(),
                ],
            );
        }
        grp.members.push(Member {
            phone: self.phone.to_owned(),
            role: Role::Member,
        });
        let grp = grp.clone();
        let to = account_members(&grp, g.accounts());
        if let Some(actor) = &actor {
            let action = NodeBuilder::new("add")
                .attr("reason", "invite")
                .children([actor.node("participant", None)])
                .build();
            notify(
                self.sim,
                &g,
                &gid,
                Some(actor),
                vec![action],
                &to,
                Some(self.conn),
            );
        }
        result(
            self.id,
            vec![NodeBuilder::new("group").attr("jid", jid).build()],
        )
    }

    /// An IQ to the group `gid`.
    fn on_group(&self, gid: &str, ty: &str, child: &NodeRef<'_>) -> Node {
        let mut g = self.sim.lock();
        let Some(grp) = g.messaging().groups.get(gid) else {
            return error(self.id, 404, "item-not-found");
        };
        let Some(me) = grp.member(self.phone).cloned() else {
            return error(self.id, 404, "item-not-found");
        };
        let tag = child.tag.as_ref();
        let world = &self.sim.world;
        if ty == "get" {
            return match tag {
                "query" => result(self.id, vec![group_node(world, g.accounts(), grp)]),
                "invite" if me.role.is_admin() => result(
                    self.id,
                    vec![
                        NodeBuilder::new("invite")
                            .attr("code", grp.invite.clone())
                            .build(),
                    ],
                ),
                "membership_approval_requests" if me.role.is_admin() => {
                    let list: Vec<Node> = grp
                        .requests
                        .iter()
                        .filter_map(|r| {
                            let p = person(world, g.accounts(), &r.phone)?;
                            Some(
                                NodeBuilder::new("membership_approval_request")
                                    .attr("jid", p.pn_jid().unwrap_or_else(|| p.lid_jid()))
                                    .attr("request_time", r.t.to_string())
                                    .build(),
                            )
                        })
                        .collect();
                    result(
                        self.id,
                        vec![
                            NodeBuilder::new("membership_approval_requests")
                                .children(list)
                                .build(),
                        ],
                    )
                }
                "invite" | "membership_approval_requests" => error(self.id, 403, "not-authorized"),
                _ => error(self.id, 501, "feature-not-implemented"),
            };
        }
        let admin_only = match tag {
            "subject" | "description" => grp.locked,
            _ => true,
        };
        if admin_only && !me.role.is_admin() {
            return error(self.id, 403, "not-authorized");
        }
        let actor = person(world, g.accounts(), self.phone);
        let (reply, actions, removed) = {
            let (accounts, messaging) = g.accounts_and_messaging_mut();
            let Some(grp) = messaging.groups.get_mut(gid) else {
                return error(self.id, 404, "item-not-found");
            };
            match change(world, accounts, grp, self.phone, tag, child) {
                Ok(c) => (c.reply, c.actions, c.removed),
                Err(code) => return error(self.id, code, "refused"),
            }
        };
        if !actions.is_empty() {
            let mut to = g
                .messaging()
                .groups
                .get(gid)
                .map(|grp| account_members(grp, g.accounts()))
                .unwrap_or_default();
            to.extend(removed.into_iter().filter(|p| g.accounts().contains_key(p)));
            notify(
                self.sim,
                &g,
                gid,
                actor.as_ref(),
                actions,
                &to,
                Some(self.conn),
            );
        }
        result(self.id, reply)
    }
}

/// What a change did: the IQ's answer, the notification's actions, and
/// who was removed (they are told too).
struct Changed {
    reply: Vec<Node>,
    actions: Vec<Node>,
    removed: Vec<String>,
}

impl Changed {
    fn notice(action: Node) -> Self {
        Self {
            reply: Vec::new(),
            actions: vec![action],
            removed: Vec::new(),
        }
    }
}

/// Adds, removes, promotes or demotes each of `asked` (JIDs by number or
/// LID): the per-participant answers and the phones it was done for.
fn membership(
    world: &World,
    accounts: &BTreeMap<String, Account>,
    grp: &mut Group,
    action: &str,
    asked: &[String],
) -> (Vec<Node>, Vec<String>) {
    let mut answers = Vec::new();
    let mut done = Vec::new();
    for jid in asked {
        let phone = phone_of(world, accounts, jid);
        let code = match phone.as_deref() {
            // Not on WhatsApp (adding), or not a member.
            None => Some(404),
            Some(p) => match (action, grp.members.iter_mut().find(|m| m.phone == p)) {
                ("add", Some(_)) => Some(409),
                ("add", None) => {
                    grp.members.push(Member {
                        phone: p.to_owned(),
                        role: Role::Member,
                    });
                    None
                }
                (_, None) => Some(404),
                (_, Some(m)) if m.role == Role::Superadmin && action != "promote" => Some(406),
                ("remove", Some(_)) => {
                    grp.members.retain(|m| m.phone != p);
                    None
                }
                ("promote", Some(m)) => {
                    if m.role == Role::Member {
                        m.role = Role::Admin;
                    }
                    None
                }
                ("demote", Some(m)) => {
                    m.role = Role::Member;
                    None
                }
                _ => Some(400),
            },
        };
        let mut b = NodeBuilder::new("participant").attr("jid", jid.clone());
        match code {
            Some(c) => b = b.attr("error", c.to_string()),
            None => {
                if let Some(p) = &phone {
                    done.push(p.clone());
                }
            }
        }
        answers.push(b.build());
    }
    (answers, done)
}

/// A membership action's notification.
fn membership_change(
    world: &World,
    accounts: &BTreeMap<String, Account>,
    action: &str,
    done: Vec<String>,
) -> Changed {
    let actions = if done.is_empty() {
        Vec::new()
    } else {
        vec![participants_action(world, accounts, action, &done)]
    };
    Changed {
        reply: Vec::new(),
        actions,
        removed: if action == "remove" { done } else { Vec::new() },
    }
}

fn set_subject(grp: &mut Group, actor: &Person, subject: String) -> Changed {
    grp.subject.clone_from(&subject);
    grp.subject_t = wacore::time::now_secs();
    grp.subject_by.clone_from(&actor.phone);
    Changed::notice(
        NodeBuilder::new("subject")
            .attr("subject", subject)
            .attr("s_o", actor.lid_jid())
            .attr("s_t", grp.subject_t.to_string())
            .build(),
    )
}

fn set_description(grp: &mut Group, text: Option<String>, id: String) -> Changed {
    grp.description = text.clone().filter(|t| !t.is_empty());
    grp.description_id = Some(id.clone());
    let b = NodeBuilder::new("description").attr("id", id);
    Changed::notice(match grp.description.clone() {
        Some(t) => b
            .children([NodeBuilder::new("body").string_content(t).build()])
            .build(),
        None => b.attr("delete", "true").build(),
    })
}

/// Sets one of the three settings; `None` when it did not change.
fn set_setting(grp: &mut Group, setting: &str, on: bool) -> Option<Changed> {
    let (flag, action) = match setting {
        "announce" => (
            &mut grp.announce,
            if on {
                "announcement"
            } else {
                "not_announcement"
            },
        ),
        "locked" => (&mut grp.locked, if on { "locked" } else { "unlocked" }),
        _ => (&mut grp.approval, "membership_approval_mode"),
    };
    if *flag == on {
        return None;
    }
    *flag = on;
    let node = if action == "membership_approval_mode" {
        NodeBuilder::new(action)
            .children([NodeBuilder::new("group_join")
                .attr("state", if on { "on" } else { "off" })
                .build()])
            .build()
    } else {
        NodeBuilder::new(action).build()
    };
    Some(Changed::notice(node))
}

/// A `set` IQ to a group by a member allowed to make it (`actor`): the
/// change, or the error code.
fn change(
    world: &World,
    accounts: &BTreeMap<String, Account>,
    grp: &mut Group,
    actor: &str,
    tag: &str,
    child: &NodeRef<'_>,
) -> Result<Changed, u16> {
    let who = person(world, accounts, actor).ok_or(404u16)?;
    match tag {
        "add" | "remove" | "promote" | "demote" => {
            let (answers, done) = membership(world, accounts, grp, tag, &participant_jids(child));
            let mut changed = membership_change(world, accounts, tag, done);
            changed.reply = vec![
                NodeBuilder::new(membership_tag(tag))
                    .children(answers)
                    .build(),
            ];
            Ok(changed)
        }
        "subject" => {
            let subject = child
                .content_as_string()
                .map(|s| s.to_string())
                .unwrap_or_default();
            if subject.trim().is_empty() {
                return Err(400);
            }
            Ok(set_subject(grp, &who, subject))
        }
        "description" => {
            let prev = attr(child, "prev");
            if grp.description.is_some() && prev != grp.description_id {
                return Err(409);
            }
            let text = if attr(child, "delete").as_deref() == Some("true") {
                None
            } else {
                child
                    .get_optional_child("body")
                    .and_then(|b| b.content_as_string())
                    .map(|s| s.to_string())
            };
            let id = attr(child, "id").unwrap_or_else(|| random_digits(8));
            Ok(set_description(grp, text, id))
        }
        "announcement" | "not_announcement" | "locked" | "unlocked" => {
            let (setting, on) = match tag {
                "announcement" => ("announce", true),
                "not_announcement" => ("announce", false),
                "locked" => ("locked", true),
                _ => ("locked", false),
            };
            Ok(set_setting(grp, setting, on).unwrap_or(Changed {
                reply: Vec::new(),
                actions: Vec::new(),
                removed: Vec::new(),
            }))
        }
        "membership_approval_mode" => {
            let on = child
                .get_optional_child("group_join")
                .and_then(|j| attr(j, "state"))
                .is_some_and(|s| s == "on");
            Ok(set_setting(grp, "approval", on).unwrap_or(Changed {
                reply: Vec::new(),
                actions: Vec::new(),
                removed: Vec::new(),
            }))
        }
        "invite" => {
            grp.invite = new_invite_code();
            Ok(Changed {
                reply: vec![
                    NodeBuilder::new("invite")
                        .attr("code", grp.invite.clone())
                        .build(),
                ],
                actions: Vec::new(),
                removed: Vec::new(),
            })
        }
        "membership_requests_action" => {
            let Some(decision) = child.children().and_then(|c| c.first()) else {
                return Err(400);
            };
            let approve = match decision.tag.as_ref() {
                "approve" => true,
                "reject" => false,
                _ => return Err(400),
            };
            let mut answers = Vec::new();
            let mut added = Vec::new();
            for jid in participant_jids(decision) {
                let phone = phone_of(world, accounts, &jid);
                let found = phone
                    .as_ref()
                    .and_then(|p| grp.requests.iter().position(|r| &r.phone == p));
                let mut b = NodeBuilder::new("participant").attr("jid", jid.clone());
                match (found, phone) {
                    (Some(i), Some(p)) => {
                        grp.requests.remove(i);
                        if approve && grp.member(&p).is_none() {
                            grp.members.push(Member {
                                phone: p.clone(),
                                role: Role::Member,
                            });
                            added.push(p);
                        }
                    }
                    _ => b = b.attr("error", "404"),
                }
                answers.push(b.build());
            }
            let mut changed = membership_change(world, accounts, "add", added);
            changed.reply = vec![
                NodeBuilder::new("membership_requests_action")
                    .children(
                        [NodeBuilder::new(if approve { "approve" } else { "reject" })
                            .children(answers)
                            .build()],
                    )
                    .build(),
            ];
            Ok(changed)
        }
        _ => Err(501),
    }
}

// ------------------------------------------------- gateway → group

/// The `<enc>` copies of a client's group message: the pairwise ones per
/// device JID, and the `skmsg`.
struct Copies {
    pairwise: Vec<(String, String, u8, Vec<u8>)>,
    skmsg: Option<(u8, Vec<u8>)>,
}

fn enc_parts(enc: &NodeRef<'_>) -> (String, u8, Vec<u8>) {
    (
        attr(enc, "type").unwrap_or_default(),
        attr(enc, "v").and_then(|v| v.parse().ok()).unwrap_or(2),
        enc.content_bytes().unwrap_or_default().to_vec(),
    )
}

fn copies(node: &NodeRef<'_>) -> Copies {
    let mut pairwise = Vec::new();
    if let Some(parts) = node.get_optional_child("participants") {
        for to in parts.get_children_by_tag("to") {
            if let (Some(jid), Some(enc)) = (attr(to, "jid"), to.get_optional_child("enc")) {
                let (kind, v, bytes) = enc_parts(enc);
                pairwise.push((jid, kind, v, bytes));
            }
        }
    }
    let skmsg = node
        .get_children_by_tag("enc")
        .map(enc_parts)
        .find(|(kind, _, _)| kind == "skmsg")
        .map(|(_, v, bytes)| (v, bytes));
    Copies { pairwise, skmsg }
}

/// A client's `<message to=group>`: each member contact takes in its copy
/// of the sender-key distribution, decrypts the `skmsg` and logs it, and
/// receipts it. The server's ack; `None` when it is not to a group.
pub(crate) fn client_message(sim: &Arc<Sim>, me: (&str, u16), node: &NodeRef<'_>) -> Option<Node> {
    let to = attr(node, "to")?;
    let gid = group_id(&to)?.to_owned();
    let id = attr(node, "id")?;
    let (account, device) = me;
    let ack = |error: Option<u16>| {
        let mut b = NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id.clone())
            .attr("from", to.clone())
            .attr("t", wacore::time::now_secs().to_string());
        if let Some(e) = error {
            b = b.attr("error", e.to_string());
        }
        b.build()
    };
    let peer = peer_key(account, device);
    let copies = copies(node);
    let world = &sim.world;
    let mut delivered = Vec::new();
    {
        let mut g = sim.lock();
        let (accounts, messaging) = g.accounts_and_messaging_mut();
        let accounts = &*accounts;
        let (contacts, groups) = messaging.contacts_and_groups();
        let Some(grp) = groups.get_mut(&gid) else {
            return Some(ack(Some(404)));
        };
        let Some(sender) = grp.member(account).cloned() else {
            return Some(ack(Some(403)));
        };
        if grp.announce && !sender.role.is_admin() {
            return Some(ack(Some(403)));
        }
        let members: Vec<String> = grp
            .members
            .iter()
            .filter(|m| !accounts.contains_key(&m.phone))
            .map(|m| m.phone.clone())
            .collect();
        for m in members {
            let Some(contact) = world.contact(&m).filter(|c| !c.is_group) else {
                continue;
            };
            let copy = copies.pairwise.iter().find(|(jid, ..)| {
                split_jid(jid).is_some_and(|(user, server, dev)| {
                    dev == 0
                        && match server {
                            "lid" => contact.lid.as_deref() == Some(user),
                            _ => user == m,
                        }
                })
            });
            if let Some((_, kind, v, ct)) = copy {
                let opened = messaging::contact_user(contacts, &m)
                    .and_then(|u: &mut ContactUser| u.decrypt(&peer, kind, ct))
                    .and_then(|p| wacore::messages::decode_plaintext(&p, *v));
                match opened {
                    Ok(msg) => {
                        let skdm = msg
                            .sender_key_distribution_message
                            .as_option()
                            .and_then(|d| d.axolotl_sender_key_distribution_message.clone());
                        if let Some(skdm) = skdm
                            && let Err(e) = take_distribution(grp, &m, &peer, &skdm)
                        {
                            tracing::warn!(member = m, "bad sender-key distribution: {e:#}");
                        }
                    }
                    Err(e) => tracing::warn!(member = m, id, "cannot decrypt its copy: {e:#}"),
                }
            }
            let Some((v, skmsg)) = &copies.skmsg else {
                continue;
            };
            let opened = open(grp, &m, &peer, skmsg)
                .and_then(|p| wacore::messages::decode_plaintext(&p, *v));
            match opened {
                Ok(msg) => {
                    if let Some(entry) = messaging::summarize(&id, &msg) {
                        log_received(grp, &m, Received::new(entry, account, &msg));
                        if !contact.manual_group_receipts
                            && let Some(p) = person(world, accounts, &m)
                        {
                            delivered.push((p, contact.reads_after_ms));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        member = m,
                        id,
                        group = gid,
                        "cannot decrypt the group message: {e:#}"
                    );
                }
            }
        }
    }
    tracing::debug!(
        account,
        device,
        id,
        group = gid,
        members = delivered.len(),
        "group message decrypted"
    );
    if !delivered.is_empty() {
        schedule_receipts(
            sim.clone(),
            account.to_owned(),
            to.clone(),
            id.clone(),
            delivered,
        );
    }
    Some(ack(None))
}

/// The member `p`'s receipt of the message `id` in `group` (a JID):
/// delivered, or read.
fn member_receipt(group: &str, p: &Person, id: &str, read: bool) -> Node {
    let mut b = NodeBuilder::new("receipt")
        .attr("from", group.to_owned())
        .attr("participant", p.lid_jid())
        .attr("id", id.to_owned())
        .attr("t", wacore::time::now_secs().to_string());
    if let Some(pn) = p.pn_jid() {
        b = b.attr("participant_pn", pn);
    }
    if read {
        b = b.attr("type", "read");
    }
    b.build()
}

/// Each member's delivery receipt after `receiptDelayMs`, and the readers'
/// read receipts `readsAfterMs` later, to every device of the account.
fn schedule_receipts(
    sim: Arc<Sim>,
    account: String,
    group: String,
    id: String,
    mut members: Vec<(Person, Option<u64>)>,
) {
    tokio::spawn(async move {
        let receipt = |p: &Person, read: bool| member_receipt(&group, p, &id, read);
        tokio::time::sleep(sim.world.receipt_delay()).await;
        for (p, _) in &members {
            let node = receipt(p, false);
            crate::iq::broadcast(&sim, &account, || Outbound::Node(node.clone()));
        }
        members.retain(|(_, r)| r.is_some());
        members.sort_by_key(|(_, r)| *r);
        let mut waited = 0;
        for (p, after) in &members {
            let after = after.unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(after.saturating_sub(waited))).await;
            waited = after.max(waited);
            let node = receipt(p, true);
            crate::iq::broadcast(&sim, &account, || Outbound::Node(node.clone()));
        }
    });
}

/// A client's `<receipt to=group participant=…>`: the messages it names
/// are acknowledged by this device, and the receipt is logged for the
/// member who wrote them.
pub(crate) fn client_receipt(sim: &Sim, me: (&str, u16), node: &NodeRef<'_>) {
    if attr(node, "type").as_deref() == Some("retry") {
        tracing::warn!(
            account = me.0,
            device = me.1,
            "the client could not decrypt a group message (retry receipt)"
        );
        return;
    }
    let mut ids: Vec<String> = attr(node, "id").into_iter().collect();
    if let Some(list) = node.get_optional_child("list") {
        ids.extend(
            list.get_children_by_tag("item")
                .filter_map(|i| attr(i, "id")),
        );
    }
    let kind = match attr(node, "type").as_deref() {
        None | Some("inactive" | "delivery") => Some("delivered"),
        Some("read" | "read-self" | "played") => Some("read"),
        _ => None,
    };
    let mut g = sim.lock();
    messaging::acknowledge(g.messaging_mut(), me.0, me.1, &ids);
    let (Some(kind), Some(gid), Some(participant)) = (
        kind,
        attr(node, "to")
            .as_deref()
            .and_then(group_id)
            .map(str::to_owned),
        attr(node, "participant"),
    ) else {
        return;
    };
    let Some(member) = phone_of(&sim.world, g.accounts(), &participant) else {
        return;
    };
    let Some(grp) = g.messaging_mut().groups.get_mut(&gid) else {
        return;
    };
    let log = grp.receipts.entry(member).or_default();
    for id in ids {
        if !log.iter().any(|r| r.id == id && r.kind == kind) {
            log.push(AccountReceipt {
                id,
                kind: kind.to_owned(),
                at: messaging::now_rfc3339(),
            });
        }
    }
}

// ------------------------------------------------------ the admin API

fn bad(e: impl std::fmt::Display, usage: &str) -> AdminError {
    AdminError::BadRequest(format!("the body must be {usage}: {e}"))
}

fn phone_arg(s: &str, field: &str) -> Result<String, AdminError> {
    phone_digits(s.split('@').next().unwrap_or_default())
        .ok_or_else(|| AdminError::BadRequest(format!("\"{field}\" '{s}' is not a phone number")))
}

/// The group id of a path segment: `{id}@g.us` or the id alone.
fn id_arg(jid: &str) -> Result<String, AdminError> {
    let id = group_id(jid).unwrap_or(jid);
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(AdminError::BadRequest(format!(
            "'{jid}' is not a group JID"
        )));
    }
    Ok(id.to_owned())
}

fn not_found(id: &str) -> AdminError {
    AdminError::NotFound(format!("no group {id}@g.us"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    creator: String,
    subject: String,
    #[serde(default)]
    participants: Vec<String>,
}

/// `POST /admin/groups`: a world contact creates a group; account phones
/// among the participants are added and their companions notified.
pub(crate) async fn create(sim: &Sim, body: &[u8]) -> Result<serde_json::Value, AdminError> {
    let usage = "{\"creator\": \"<phone>\", \"subject\", \"participants\": [\"<phone>\"…]}";
    let body: CreateBody = serde_json::from_slice(body).map_err(|e| bad(e, usage))?;
    let creator = phone_arg(&body.creator, "creator")?;
    if body.subject.trim().is_empty() || body.subject.chars().count() > 100 {
        return Err(AdminError::BadRequest(
            "\"subject\" must be 1 to 100 characters".into(),
        ));
    }
    let world = &sim.world;
    if world.contact(&creator).is_none_or(|c| c.is_group) {
        return Err(AdminError::NotFound(format!(
            "{creator} is not a contact of the world"
        )));
    }
    let jid = {
        let mut g = sim.lock();
        let mut members = vec![Member {
            phone: creator.clone(),
            role: Role::Superadmin,
        }];
        for p in &body.participants {
            let phone = phone_arg(p, "participants")?;
            if person(world, g.accounts(), &phone).is_none() {
                return Err(AdminError::NotFound(format!(
                    "{phone} is neither a contact of the world nor an account"
                )));
            }
            if !members.iter().any(|m| m.phone == phone) {
                members.push(Member {
                    phone,
                    role: Role::Member,
                });
            }
        }
        let grp = new_group(&creator, body.subject, members);
        let node = group_node(world, g.accounts(), &grp);
        let to = account_members(&grp, g.accounts());
        let gid = grp.id.clone();
        let jid = grp.jid();
        g.messaging_mut().groups.insert(gid.clone(), grp);
        let actor = person(world, g.accounts(), &creator);
        let action = NodeBuilder::new("create").children([node]).build();
        notify(sim, &g, &gid, actor.as_ref(), vec![action], &to, None);
        jid
    };
    let _ = sim.persist().await;
    Ok(serde_json::json!({ "jid": jid }))
}

/// `GET /admin/groups/{jid}`.
pub(crate) fn get(sim: &Sim, jid: &str) -> Result<serde_json::Value, AdminError> {
    let id = id_arg(jid)?;
    let g = sim.lock();
    let grp = g
        .messaging()
        .groups
        .get(&id)
        .ok_or_else(|| not_found(&id))?;
    let participants: Vec<serde_json::Value> = grp
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "phone": m.phone,
                "admin": m.role.is_admin(),
                "role": m.role,
            })
        })
        .collect();
    let requests: Vec<&str> = grp.requests.iter().map(|r| r.phone.as_str()).collect();
    Ok(serde_json::json!({
        "jid": grp.jid(),
        "subject": grp.subject,
        "description": grp.description,
        "participants": participants,
        "announce": grp.announce,
        "locked": grp.locked,
        "approval": grp.approval,
        "invite": grp.invite,
        "requests": requests,
    }))
}

/// `GET /admin/groups/{jid}/messages?member=…`.
pub(crate) fn received(
    sim: &Sim,
    jid: &str,
    member: Option<&str>,
) -> Result<serde_json::Value, AdminError> {
    let id = id_arg(jid)?;
    let member =
        member.ok_or_else(|| AdminError::BadRequest("the query needs ?member=<phone>".into()))?;
    let member = phone_arg(member, "member")?;
    let g = sim.lock();
    let grp = g
        .messaging()
        .groups
        .get(&id)
        .ok_or_else(|| not_found(&id))?;
    let data = grp.received.get(&member).cloned().unwrap_or_default();
    let receipts = grp.receipts.get(&member).cloned().unwrap_or_default();
    Ok(serde_json::json!({ "data": data, "receipts": receipts }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostBody {
    from: String,
    /// `text` (the default) or `reaction`.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// A text's: the message of the group it answers (quotes).
    #[serde(default)]
    reply_to: Option<String>,
    /// A reaction's: the message it reacts to.
    #[serde(default)]
    target: Option<String>,
    /// A reaction's emoji (empty: the reaction taken back).
    #[serde(default)]
    emoji: Option<String>,
}

const POST_USAGE: &str = "{\"from\": \"<phone>\", \"text\", \"replyTo\"?} or {\"from\", \"type\": \"reaction\", \"target\", \"emoji\"}";

/// Who wrote the message `id` of the group (a phone), as the member
/// contacts logged it.
fn author_of(g: &Group, id: &str) -> Option<String> {
    g.received
        .values()
        .flatten()
        .find(|r| r.id == id)
        .map(|r| r.from.clone())
}

/// The key of the group's message `id` as the member `from` names it:
/// `fromMe` when it wrote it, otherwise its author by LID.
fn member_key(
    world: &World,
    accounts: &BTreeMap<String, Account>,
    g: &Group,
    from: &str,
    id: &str,
) -> Result<(wa::MessageKey, Option<String>), AdminError> {
    let author = author_of(g, id).ok_or_else(|| {
        AdminError::NotFound(format!("no message {id} in {} that a member got", g.jid()))
    })?;
    let participant = (author != from)
        .then(|| person(world, accounts, &author).map(|p| p.lid_jid()))
        .flatten();
    Ok((
        wa::MessageKey {
            remote_jid: Some(g.jid()),
            from_me: Some(author == from),
            id: Some(id.to_owned()),
            participant: participant.clone(),
        },
        participant,
    ))
}

/// What the member `from` posts, by the body's `type`.
fn member_message(
    world: &World,
    accounts: &BTreeMap<String, Account>,
    g: &Group,
    from: &str,
    body: PostBody,
) -> Result<wa::Message, AdminError> {
    let bad = |m: &str| AdminError::BadRequest(format!("{m}: the body must be {POST_USAGE}"));
    match body.kind.as_deref() {
        None | Some("text") => {
            if body.target.is_some() || body.emoji.is_some() {
                return Err(bad("\"target\" and \"emoji\" go with a reaction"));
            }
            let text = body
                .text
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad("\"text\" is missing or empty"))?;
            let Some(quoted) = body.reply_to else {
                return Ok(wa::Message {
                    conversation: Some(text),
                    ..Default::default()
                });
            };
            let (_, participant) = member_key(world, accounts, g, from, &quoted)?;
            // A reply: the quoted message's id and author in its context
            // (a participant of the group; the member's own: none).
            Ok(wa::Message {
                extended_text_message: buffa::MessageField::some(
                    wa::message::ExtendedTextMessage {
                        text: Some(text),
                        context_info: buffa::MessageField::some(wa::ContextInfo {
                            stanza_id: Some(quoted),
                            participant: participant
                                .or_else(|| person(world, accounts, from).map(|p| p.lid_jid())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                ..Default::default()
            })
        }
        Some("reaction") => {
            if body.text.is_some() || body.reply_to.is_some() {
                return Err(bad("a reaction has no \"text\" or \"replyTo\""));
            }
            let target = body
                .target
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad("a reaction needs \"target\""))?;
            let emoji = body
                .emoji
                .ok_or_else(|| bad("a reaction needs \"emoji\""))?;
            let (key, _) = member_key(world, accounts, g, from, &target)?;
            Ok(wa::Message {
                reaction_message: buffa::MessageField::some(wa::message::ReactionMessage {
                    key: buffa::MessageField::some(key),
                    text: Some(emoji),
                    sender_timestamp_ms: Some(wacore::time::now_millis()),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
        Some(other) => Err(bad(&format!(
            "\"type\" '{other}' is neither text nor reaction"
        ))),
    }
}

/// `POST /admin/groups/{jid}/messages`: a member contact posts to the
/// group (a text, a reply, a reaction), encrypted with its sender key to
/// every member device (the distribution beside it to devices that lack
/// the key). Returns the id.
pub(crate) async fn post(sim: &Arc<Sim>, jid: &str, body: &[u8]) -> Result<String, AdminError> {
    let id = id_arg(jid)?;
    let body: PostBody = serde_json::from_slice(body).map_err(|e| bad(e, POST_USAGE))?;
    let from = phone_arg(&body.from, "from")?;
    let world = &sim.world;
    let msg_id = messaging::new_message_id();
    let t = wacore::time::now_secs();
    let sends = {
        let mut g = sim.lock();
        let mut queued: Vec<(String, Pending)> = Vec::new();
        let account_members;
        {
            let (accounts, messaging) = g.accounts_and_messaging_mut();
            let (contacts, groups) = messaging.contacts_and_groups();
            let grp = groups.get_mut(&id).ok_or_else(|| not_found(&id))?;
            let member = grp.member(&from).cloned().ok_or_else(|| {
                AdminError::Conflict(format!("{from} is not a member of {}", grp.jid()))
            })?;
            if accounts.contains_key(&from) {
                return Err(AdminError::BadRequest(format!(
                    "{from} is an account: its devices send for it"
                )));
            }
            if grp.announce && !member.role.is_admin() {
                return Err(AdminError::Conflict(
                    "an announcement group: only admins may post".into(),
                ));
            }
            let sender = person(world, accounts, &from)
                .ok_or_else(|| AdminError::NotFound(format!("{from} is not a contact")))?;
            let message = member_message(world, accounts, grp, &from, body)?;
            let plaintext = wacore::messages::MessageUtils::pad_message_v2(message.encode_to_vec());
            let (skdm, skmsg) =
                seal(grp, &from, &plaintext).map_err(|e| AdminError::Failed(format!("{e:#}")))?;
            // The other member contacts.
            let others: Vec<String> = grp
                .members
                .iter()
                .filter(|m| m.phone != from && !accounts.contains_key(&m.phone))
                .map(|m| m.phone.clone())
                .collect();
            for m in others {
                if !grp.keys.contains_key(&format!("{m}/{from}"))
                    && let Err(e) = take_distribution(grp, &m, &from, &skdm)
                {
                    tracing::warn!(member = m, "cannot take the distribution: {e:#}");
                    continue;
                }
                match open(grp, &m, &from, &skmsg)
                    .and_then(|p| wacore::messages::decode_plaintext(&p, 2))
                {
                    Ok(msg) => {
                        if let Some(entry) = messaging::summarize(&msg_id, &msg) {
                            log_received(grp, &m, Received::new(entry, &from, &msg));
                        }
                    }
                    Err(e) => tracing::warn!(member = m, "cannot decrypt: {e:#}"),
                }
            }
            // The account members' devices.
            let distribution = wa::Message {
                sender_key_distribution_message: buffa::MessageField::some(
                    wa::message::SenderKeyDistributionMessage {
                        group_id: Some(grp.jid()),
                        axolotl_sender_key_distribution_message: Some(skdm),
                    },
                ),
                ..Default::default()
            };
            let distribution =
                wacore::messages::MessageUtils::pad_message_v2(distribution.encode_to_vec());
            let user = messaging::contact_user(contacts, &from)
                .map_err(|e| AdminError::Failed(e.to_string()))?;
            account_members = grp
                .members
                .iter()
                .filter(|m| accounts.contains_key(&m.phone))
                .map(|m| m.phone.clone())
                .collect::<Vec<_>>();
            for a in &account_members {
                let Some(acc) = accounts.get_mut(a) else {
                    continue;
                };
                for (dev_id, dev) in acc.devices.iter_mut() {
                    let peer = peer_key(a, *dev_id);
                    let marker = format!("{from}>{peer}");
                    let (enc_type, ciphertext) = if grp.distributed.contains(&marker) {
                        (String::new(), Vec::new())
                    } else {
                        let bundle =
                            (!user.has_session(&peer)).then(|| messaging::companion_bundle(dev));
                        match user.encrypt(&peer, bundle, &distribution) {
                            Ok((kind, ct)) => {
                                grp.distributed.insert(marker);
                                (kind.to_owned(), ct)
                            }
                            Err(e) => {
                                tracing::warn!(
                                    account = a,
                                    device = dev_id,
                                    "cannot encrypt to it: {e:#}"
                                );
                                continue;
                            }
                        }
                    };
                    queued.push((
                        peer,
                        Pending::group(
                            &msg_id,
                            &grp.jid(),
                            t,
                            sender.name.clone(),
                            (sender.lid_jid(), sender.pn_jid()),
                            (enc_type, ciphertext),
                            skmsg.clone(),
                        ),
                    ));
                }
            }
        }
        for (peer, p) in queued {
            g.messaging_mut().queue(peer, p);
        }
        let mut sends = Vec::new();
        for a in &account_members {
            sends.extend(messaging::to_ready_devices(&mut g, a, &msg_id));
        }
        sends
    };
    // On disk before it is on the wire.
    let _ = sim.persist().await;
    for (tx, node) in sends {
        let _ = tx.send(Outbound::Node(node));
    }
    tracing::debug!(group = id, from, id = msg_id, "member posted to the group");
    Ok(msg_id)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptsBody {
    from: String,
    ids: Vec<String>,
    #[serde(rename = "type")]
    kind: String,
}

/// `POST /admin/groups/{jid}/receipts`: the member contact `from` sends
/// its `delivered` or `read` receipt of account messages it decrypted in
/// the group, to every connected device of the account that wrote each.
/// Returns how many receipts went out.
pub(crate) fn receipts(sim: &Sim, jid: &str, body: &[u8]) -> Result<serde_json::Value, AdminError> {
    let id = id_arg(jid)?;
    let usage =
        "{\"from\": \"<phone>\", \"ids\": [\"<message id>\"…], \"type\": \"delivered\"|\"read\"}";
    let body: ReceiptsBody = serde_json::from_slice(body).map_err(|e| bad(e, usage))?;
    let from = phone_arg(&body.from, "from")?;
    let read = match body.kind.as_str() {
        "delivered" => false,
        "read" => true,
        other => {
            return Err(AdminError::BadRequest(format!(
                "\"type\" must be delivered or read, not '{other}'"
            )));
        }
    };
    if body.ids.is_empty() {
        return Err(AdminError::BadRequest("\"ids\" is empty".into()));
    }
    let (group, member, to) = {
        let g = sim.lock();
        let grp = g
            .messaging()
            .groups
            .get(&id)
            .ok_or_else(|| not_found(&id))?;
        if grp.member(&from).is_none() || g.accounts().contains_key(&from) {
            return Err(AdminError::Conflict(format!(
                "{from} is not a member contact of {}",
                grp.jid()
            )));
        }
        let member = person(&sim.world, g.accounts(), &from)
            .ok_or_else(|| AdminError::NotFound(format!("{from} is not a contact")))?;
        let log = grp
            .received
            .get(&from)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Each id to the account that wrote it.
        let mut to = Vec::new();
        for mid in &body.ids {
            let author = log
                .iter()
                .find(|r| &r.id == mid && g.accounts().contains_key(&r.from))
                .map(|r| r.from.clone())
                .ok_or_else(|| {
                    AdminError::NotFound(format!(
                        "{from} got no message {mid} of an account in {}",
                        grp.jid()
                    ))
                })?;
            to.push((author, mid.clone()));
        }
        (grp.jid(), member, to)
    };
    let mut sent = 0;
    for (account, mid) in to {
        let node = member_receipt(&group, &member, &mid, read);
        sent += crate::iq::broadcast(sim, &account, || Outbound::Node(node.clone()));
    }
    Ok(serde_json::json!({ "sent": sent }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantsBody {
    by: String,
    action: String,
    participants: Vec<String>,
}

/// `POST /admin/groups/{jid}/participants`: an admin contact adds,
/// removes, promotes or demotes; the account members' devices are told
/// (an account removed too). The group after, with each participant's
/// outcome.
pub(crate) async fn participants(
    sim: &Sim,
    jid: &str,
    body: &[u8],
) -> Result<serde_json::Value, AdminError> {
    let id = id_arg(jid)?;
    let usage = "{\"by\": \"<phone>\", \"action\": \"add\"|\"remove\"|\"promote\"|\"demote\", \"participants\": [\"<phone>\"…]}";
    let body: ParticipantsBody = serde_json::from_slice(body).map_err(|e| bad(e, usage))?;
    if !matches!(
        body.action.as_str(),
        "add" | "remove" | "promote" | "demote"
    ) {
        return Err(AdminError::BadRequest(format!(
            "\"action\" must be add, remove, promote or demote, not '{}'",
            body.action
        )));
    }
    let by = phone_arg(&body.by, "by")?;
    let asked: Vec<String> = body
        .participants
        .iter()
        .map(|p| phone_arg(p, "participants").map(|p| format!("{p}@s.whatsapp.net")))
        .collect::<Result<_, _>>()?;
    let outcomes = change_by_contact(sim, &id, &by, |world, accounts, grp| {
        if !grp.is_admin(&by) {
            return Err(AdminError::Conflict(format!(
                "{by} is not an admin of the group"
            )));
        }
        let (answers, done) = membership(world, accounts, grp, &body.action, &asked);
        Ok((
            membership_change(world, accounts, &body.action, done),
            answers,
        ))
    })?;
    let _ = sim.persist().await;
    let outcomes: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|n| {
            serde_json::json!({
                "phone": n.attrs.get("jid").map(|j| j.to_string().trim_end_matches("@s.whatsapp.net").to_owned()),
                "error": n.attrs.get("error").map(|e| e.to_string()),
            })
        })
        .collect();
    let mut group = get(sim, &id)?;
    if let Some(o) = group.as_object_mut() {
        o.insert("outcomes".into(), outcomes.into());
    }
    Ok(group)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    by: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    announce: Option<bool>,
    #[serde(default)]
    locked: Option<bool>,
    #[serde(default)]
    approval: Option<bool>,
}

/// `PATCH /admin/groups/{jid}`: a member contact (an admin for settings,
/// or in a locked group) changes the subject, description or settings;
/// the account members' devices are told.
pub(crate) async fn update(
    sim: &Sim,
    jid: &str,
    body: &[u8],
) -> Result<serde_json::Value, AdminError> {
    let id = id_arg(jid)?;
    let usage = "{\"by\": \"<phone>\", \"subject\"?, \"description\"?, \"announce\"?, \"locked\"?, \"approval\"?}";
    let body: UpdateBody = serde_json::from_slice(body).map_err(|e| bad(e, usage))?;
    let by = phone_arg(&body.by, "by")?;
    if body.subject.as_ref().is_some_and(|s| s.trim().is_empty()) {
        return Err(AdminError::BadRequest("\"subject\" is empty".into()));
    }
    let settings = [
        ("announce", body.announce),
        ("locked", body.locked),
        ("approval", body.approval),
    ];
    change_by_contact(sim, &id, &by, |world, accounts, grp| {
        let admin = grp.is_admin(&by);
        let touches_settings = settings.iter().any(|(_, v)| v.is_some());
        if (touches_settings || grp.locked) && !admin {
            return Err(AdminError::Conflict(format!(
                "{by} is not an admin of the group"
            )));
        }
        let actor = person(world, accounts, &by)
            .ok_or_else(|| AdminError::NotFound(format!("{by} is not a contact")))?;
        let mut all = Changed {
            reply: Vec::new(),
            actions: Vec::new(),
            removed: Vec::new(),
        };
        if let Some(s) = body.subject.clone() {
            all.actions.extend(set_subject(grp, &actor, s).actions);
        }
        if let Some(d) = body.description.clone() {
            all.actions
                .extend(set_description(grp, Some(d), random_digits(8)).actions);
        }
        for (name, value) in settings {
            if let Some(on) = value
                && let Some(c) = set_setting(grp, name, on)
            {
                all.actions.extend(c.actions);
            }
        }
        Ok((all, ()))
    })?;
    let _ = sim.persist().await;
    get(sim, &id)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    phone: String,
}

/// `POST /admin/groups/{jid}/requests`: a world contact asks to join a
/// group that wants approval (admins see it in the requests list).
pub(crate) async fn request(
    sim: &Sim,
    jid: &str,
    body: &[u8],
) -> Result<serde_json::Value, AdminError> {
    let id = id_arg(jid)?;
    let body: RequestBody =
        serde_json::from_slice(body).map_err(|e| bad(e, "{\"phone\": \"<phone>\"}"))?;
    let phone = phone_arg(&body.phone, "phone")?;
    if sim.world.contact(&phone).is_none_or(|c| c.is_group) {
        return Err(AdminError::NotFound(format!(
            "{phone} is not a contact of the world"
        )));
    }
    {
        let mut g = sim.lock();
        let grp = g
            .messaging_mut()
            .groups
            .get_mut(&id)
            .ok_or_else(|| not_found(&id))?;
        if !grp.approval {
            return Err(AdminError::Conflict(
                "the group does not want approval: add the contact instead".into(),
            ));
        }
        if grp.member(&phone).is_some() {
            return Err(AdminError::Conflict(format!("{phone} is a member already")));
        }
        if !grp.requests.iter().any(|r| r.phone == phone) {
            grp.requests.push(Request {
                phone,
                t: wacore::time::now_secs(),
            });
        }
    }
    let _ = sim.persist().await;
    get(sim, &id)
}

/// Runs a change a member contact `by` makes (an admin for membership),
/// then tells the account members' devices (and accounts removed).
fn change_by_contact<R>(
    sim: &Sim,
    id: &str,
    by: &str,
    f: impl FnOnce(&World, &BTreeMap<String, Account>, &mut Group) -> Result<(Changed, R), AdminError>,
) -> Result<R, AdminError> {
    let world = &sim.world;
    let mut g = sim.lock();
    let actor = person(world, g.accounts(), by);
    let (changed, out) = {
        let (accounts, messaging) = g.accounts_and_messaging_mut();
        let accounts = &*accounts;
        let grp = messaging.groups.get_mut(id).ok_or_else(|| not_found(id))?;
        if grp.member(by).is_none() || accounts.contains_key(by) {
            return Err(AdminError::Conflict(format!(
                "{by} is not a member contact of {}",
                grp.jid()
            )));
        }
        f(world, accounts, grp)?
    };
    if !changed.actions.is_empty() {
        let mut to = g
            .messaging()
            .groups
            .get(id)
            .map(|grp| account_members(grp, g.accounts()))
            .unwrap_or_default();
        to.extend(
            changed
                .removed
                .into_iter()
                .filter(|p| g.accounts().contains_key(p)),
        );
        notify(sim, &g, id, actor.as_ref(), changed.actions, &to, None);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const WORLD: &str = r#"{"contacts": {
        "14155550123@s.whatsapp.net": {"lid": "100000000000123@lid"},
        "14155550124@s.whatsapp.net": {"lid": "100000000000124@lid"}
    }}"#;

    fn body(json: serde_json::Value) -> PostBody {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn members_react_and_reply_to_the_group_s_messages() {
        let world = World::from_json(WORLD).unwrap();
        let accounts = BTreeMap::new();
        let (ann, bob) = ("14155550123", "14155550124");
        let mut g = new_group(ann, "Team".into(), Vec::new());
        g.received
            .entry(bob.to_owned())
            .or_default()
            .push(Received {
                id: "3EB0ANN".into(),
                from: ann.into(),
                kind: "text".into(),
                text: Some("hi".into()),
                target: None,
                quoted: None,
                at: String::new(),
            });
        let post =
            |who: &str, b: serde_json::Value| member_message(&world, &accounts, &g, who, body(b));

        // Bob reacts to Ann's message: her LID names the author.
        let m = post(
            bob,
            serde_json::json!({"from": bob, "type": "reaction", "target": "3EB0ANN", "emoji": "👍"}),
        )
        .unwrap();
        let r = m.reaction_message.as_option().unwrap();
        let key = r.key.as_option().unwrap();
        assert_eq!(r.text.as_deref(), Some("👍"));
        assert_eq!(
            (key.from_me, key.participant.as_deref(), key.id.as_deref()),
            (Some(false), Some("100000000000123@lid"), Some("3EB0ANN"))
        );
        // Ann reacts to her own: fromMe, no participant.
        let m = post(
            ann,
            serde_json::json!({"from": ann, "type": "reaction", "target": "3EB0ANN", "emoji": ""}),
        )
        .unwrap();
        let key = m
            .reaction_message
            .as_option()
            .unwrap()
            .key
            .as_option()
            .unwrap();
        assert_eq!(
            (key.from_me, key.participant.as_deref()),
            (Some(true), None)
        );
        // Bob replies: the context quotes Ann's message.
        let m = post(
            bob,
            serde_json::json!({"from": bob, "text": "yes", "replyTo": "3EB0ANN"}),
        )
        .unwrap();
        assert_eq!(messaging::quoted_id(&m).as_deref(), Some("3EB0ANN"));
        let context = m
            .extended_text_message
            .as_option()
            .unwrap()
            .context_info
            .as_option()
            .unwrap();
        assert_eq!(context.participant.as_deref(), Some("100000000000123@lid"));

        // Nobody got that one; and shapes that are neither.
        for (b, not_found) in [
            (
                serde_json::json!({"from": bob, "text": "x", "replyTo": "3EB0NONE"}),
                true,
            ),
            (
                serde_json::json!({"from": bob, "type": "reaction", "target": "3EB0NONE", "emoji": "x"}),
                true,
            ),
            (
                serde_json::json!({"from": bob, "type": "reaction", "emoji": "x"}),
                false,
            ),
            (
                serde_json::json!({"from": bob, "type": "reaction", "target": "3EB0ANN"}),
                false,
            ),
            (
                serde_json::json!({"from": bob, "text": "x", "target": "3EB0ANN"}),
                false,
            ),
            (serde_json::json!({"from": bob, "text": ""}), false),
            (
                serde_json::json!({"from": bob, "type": "poll", "text": "x"}),
                false,
            ),
        ] {
            let err = post(bob, b.clone()).unwrap_err();
            assert_eq!(
                matches!(err, AdminError::NotFound(_)),
                not_found,
                "{b}: {err:?}"
            );
            assert!(
                not_found || matches!(err, AdminError::BadRequest(_)),
                "{b}: {err:?}"
            );
        }
    }
}
