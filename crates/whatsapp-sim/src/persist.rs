//! The state file behind `--state` ([`crate::SimulatorBuilder::state_file`]):
//! the world's mutable state as JSON, so a restarted simulator still knows
//! every account, the devices linked to it (with the keys they registered,
//! so they log in again as the same device), and their blocklists; plus the
//! server's Noise identity, so clients that cached it finish the quick IK
//! handshake.
//!
//! The file is always replaced whole and atomically (a temporary file next
//! to it, written, fsynced, renamed over it, then the directory fsynced), so
//! a crash leaves the old or the new state, never a mix. It holds private
//! keys and is created readable by its owner only (Unix).
//!
//! Shape (`"version": 1`):
//!
//! ```json
//! { "version": 1,
//!   "server": { "noiseKey": "<base64>", "certChain": "<base64>" },
//!   "accounts": [ { "phone": "15550001111", "lid": "…", "pushName": null,
//!     "identityKey": "<base64>", "rawId": 1, "registrationId": 1,
//!     "appStateKey": { "id": "…", "data": "…", "rawId": 1, "timestampMs": 0 },
//!     "nextDevice": 2, "nextKeyIndex": 2,
//!     "devices": [ { "device": 1, "noiseKey": "…", "identityKey": "…",
//!       "registrationId": 1, "signedPreKey": { "id": 1, "public": "…", "signature": "…" },
//!       "platform": "…", "keyIndex": 1, "linkedAt": 0, "preKeys": { "1": "…" },
//!       "keyShared": true } ],
//!     "blocklist": [ { "jid": "…@lid", "pnJid": "…@s.whatsapp.net", "t": 0 } ] } ] }
//! ```
//!
//! Adding state later (messages, say): a new field with `#[serde(default)]`
//! keeps old files readable; bump [`STATE_VERSION`] when an older simulator
//! must refuse the new files rather than drop what it does not know (every
//! struct here refuses unknown fields).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use wacore::libsignal::protocol::{KeyPair, PrivateKey};

use crate::messaging::Messaging;
use crate::noise::ServerKeys;
use crate::signal::AppStateKey;
use crate::state::{Account, BlockedContact, Device, Registration, SignedPreKey};
use crate::world::phone_digits;

/// The state-file format version this simulator writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Why the state file could not be read or written.
#[derive(Debug, Error)]
pub enum StateError {
    /// The file exists but cannot be read.
    #[error("cannot read state file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a state file this simulator can use.
    #[error("state file {path} is corrupt: {reason} (fix or delete it to start afresh)")]
    Corrupt {
        /// The file.
        path: String,
        /// The first problem found.
        reason: String,
    },
    /// The file cannot be written.
    #[error("cannot write state file {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Bytes, as base64 text in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct B64(pub Vec<u8>);

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map(B64)
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

impl B64 {
    fn key32(&self, what: &str) -> Result<[u8; 32], String> {
        self.0
            .as_slice()
            .try_into()
            .map_err(|_| format!("{what} is {} bytes, expected 32", self.0.len()))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServerFile {
    /// The Noise static private key.
    noise_key: B64,
    /// The certificate chain (`CertChain` protobuf) of that key.
    cert_chain: B64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AppStateKeyFile {
    id: B64,
    data: B64,
    raw_id: u32,
    timestamp_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignedPreKeyFile {
    id: u32,
    public: B64,
    signature: B64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceFile {
    device: u16,
    /// The companion's Noise public key: how its logins are recognized.
    noise_key: B64,
    /// Its Signal identity public key.
    identity_key: B64,
    registration_id: u32,
    signed_pre_key: SignedPreKeyFile,
    platform: String,
    key_index: u32,
    linked_at: i64,
    /// One-time pre-keys not handed out yet (id → public key).
    #[serde(default)]
    pre_keys: BTreeMap<u32, B64>,
    key_shared: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccountFile {
    phone: String,
    /// The LID user part (digits).
    lid: String,
    push_name: Option<String>,
    /// The phone's identity private key (signs companions' identities).
    identity_key: B64,
    raw_id: u32,
    registration_id: u32,
    app_state_key: AppStateKeyFile,
    next_device: u16,
    next_key_index: u32,
    #[serde(default)]
    devices: Vec<DeviceFile>,
    #[serde(default)]
    blocklist: Vec<BlockedContact>,
}

/// The whole state file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StateFile {
    version: u32,
    server: ServerFile,
    #[serde(default)]
    accounts: Vec<AccountFile>,
    /// Contacts' Signal state, message logs, receipts and undelivered
    /// messages (added later: a default keeps older files readable).
    #[serde(default)]
    messaging: Messaging,
}

/// Just the version, read first so a newer file gets a clear message.
#[derive(Debug, Deserialize)]
struct VersionProbe {
    version: Option<serde_json::Value>,
}

/// Reads the state file at `path`: `None` when there is none yet.
///
/// # Errors
///
/// [`StateError::Read`] when it cannot be read, [`StateError::Corrupt`] when
/// it is not JSON of this format and version.
pub(crate) fn load(path: &Path) -> Result<Option<StateFile>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    parse(&bytes)
        .map(Some)
        .map_err(|reason| StateError::Corrupt {
            path: path.display().to_string(),
            reason,
        })
}

fn parse(bytes: &[u8]) -> Result<StateFile, String> {
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON object: {e}"))?;
    match probe.version {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(STATE_VERSION)) => {}
        Some(other) => {
            return Err(format!(
                "format version {other}; this simulator reads version {STATE_VERSION}"
            ));
        }
        None => return Err("no \"version\" field".into()),
    }
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

impl StateFile {
    /// A snapshot of the persistent state (taken under the state lock).
    pub(crate) fn capture(
        accounts: &BTreeMap<String, Account>,
        messaging: &Messaging,
        keys: &ServerKeys,
    ) -> Self {
        let (noise_key, cert_chain) = keys.saved();
        Self {
            version: STATE_VERSION,
            server: ServerFile {
                noise_key: B64(noise_key.to_vec()),
                cert_chain: B64(cert_chain),
            },
            accounts: accounts.values().map(AccountFile::capture).collect(),
            messaging: messaging.clone(),
        }
    }

    /// The server keys and accounts the file describes.
    ///
    /// # Errors
    ///
    /// The first inconsistency found, as text.
    pub(crate) fn restore(
        self,
    ) -> Result<(ServerKeys, BTreeMap<String, Account>, Messaging), String> {
        let keys = ServerKeys::from_saved(&self.server.noise_key.0, self.server.cert_chain.0)?;
        let mut accounts = BTreeMap::new();
        for file in self.accounts {
            let phone = file.phone.clone();
            let account = file
                .restore()
                .map_err(|e| format!("account {phone}: {e}"))?;
            if accounts.insert(account.phone.clone(), account).is_some() {
                return Err(format!("account {phone} appears twice"));
            }
        }
        self.messaging.validate()?;
        Ok((keys, accounts, self.messaging))
    }

    /// Writes the file atomically and durably.
    ///
    /// # Errors
    ///
    /// [`StateError::Write`] naming the file and the failed step.
    pub(crate) fn write(&self, path: &Path) -> Result<(), StateError> {
        let err = |source: std::io::Error| StateError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| err(e.into()))?;
        json.push(b'\n');
        write_atomically(path, &json).map_err(err)
    }
}

impl AccountFile {
    fn capture(a: &Account) -> Self {
        Self {
            phone: a.phone.clone(),
            lid: a.lid.clone(),
            push_name: a.push_name.clone(),
            identity_key: B64(a.identity.private_key.serialize().to_vec()),
            raw_id: a.raw_id,
            registration_id: a.registration_id,
            app_state_key: AppStateKeyFile {
                id: B64(a.app_key.id.clone()),
                data: B64(a.app_key.data.to_vec()),
                raw_id: a.app_key.raw_id,
                timestamp_ms: a.app_key.timestamp_ms,
            },
            next_device: a.next_device,
            next_key_index: a.next_key_index,
            devices: a.devices.values().map(DeviceFile::capture).collect(),
            blocklist: a.blocklist.values().cloned().collect(),
        }
    }

    fn restore(self) -> Result<Account, String> {
        let phone = phone_digits(&self.phone)
            .filter(|p| *p == self.phone)
            .ok_or_else(|| "phone must be 5 to 20 digits".to_owned())?;
        if self.lid.is_empty() || !self.lid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("lid '{}' is not a LID user (digits)", self.lid));
        }
        let private = PrivateKey::deserialize(&self.identity_key.key32("identityKey")?)
            .map_err(|e| format!("identityKey: {e}"))?;
        let identity = KeyPair::try_from(private).map_err(|e| format!("identityKey: {e}"))?;
        let mut devices = BTreeMap::new();
        for d in self.devices {
            let id = d.device;
            if id == 0 {
                return Err("device 0 is the phone, not a companion".into());
            }
            if id >= self.next_device {
                return Err(format!(
                    "device {id} is not below nextDevice {}",
                    self.next_device
                ));
            }
            let device = d.restore().map_err(|e| format!("device {id}: {e}"))?;
            if devices.insert(id, device).is_some() {
                return Err(format!("device {id} appears twice"));
            }
        }
        let mut blocklist = BTreeMap::new();
        for b in self.blocklist {
            let user = b
                .jid
                .strip_suffix("@lid")
                .filter(|u| !u.is_empty() && u.bytes().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| format!("blocklist entry '{}' is not a …@lid JID", b.jid))?
                .to_owned();
            if blocklist.insert(user, b.clone()).is_some() {
                return Err(format!("blocklist entry '{}' appears twice", b.jid));
            }
        }
        Ok(Account {
            phone,
            lid: self.lid,
            push_name: self.push_name,
            identity,
            raw_id: self.raw_id,
            registration_id: self.registration_id,
            app_key: AppStateKey {
                id: self.app_state_key.id.0,
                data: self.app_state_key.data.key32("appStateKey.data")?,
                raw_id: self.app_state_key.raw_id,
                timestamp_ms: self.app_state_key.timestamp_ms,
            },
            next_device: self.next_device,
            next_key_index: self.next_key_index,
            devices,
            blocklist,
        })
    }
}

impl DeviceFile {
    fn capture(d: &Device) -> Self {
        Self {
            device: d.id,
            noise_key: B64(d.reg.noise_pub.to_vec()),
            identity_key: B64(d.reg.identity_pub.to_vec()),
            registration_id: d.reg.registration_id,
            signed_pre_key: SignedPreKeyFile {
                id: d.reg.signed_pre_key.id,
                public: B64(d.reg.signed_pre_key.public.clone()),
                signature: B64(d.reg.signed_pre_key.signature.clone()),
            },
            platform: d.reg.platform.clone(),
            key_index: d.key_index,
            linked_at: d.linked_at,
            pre_keys: d
                .pre_keys
                .iter()
                .map(|(id, k)| (*id, B64(k.clone())))
                .collect(),
            key_shared: d.key_shared,
        }
    }

    fn restore(self) -> Result<Device, String> {
        Ok(Device {
            id: self.device,
            reg: Registration {
                noise_pub: self.noise_key.key32("noiseKey")?,
                identity_pub: self.identity_key.key32("identityKey")?,
                registration_id: self.registration_id,
                signed_pre_key: SignedPreKey {
                    id: self.signed_pre_key.id,
                    public: self.signed_pre_key.public.0,
                    signature: self.signed_pre_key.signature.0,
                },
                platform: self.platform,
            },
            key_index: self.key_index,
            linked_at: self.linked_at,
            pre_keys: self.pre_keys.into_iter().map(|(id, k)| (id, k.0)).collect(),
            key_shared: self.key_shared,
        })
    }
}

/// The temporary file `path` is written through: `.NAME.tmp` beside it.
fn temp_path(path: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the state path names no file",
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(".tmp");
    Ok((dir.join(tmp), dir))
}

/// Replaces `path` with `bytes`: write a temporary file beside it, fsync
/// it, rename it over `path`, fsync the directory. Readers see the old or
/// the new content, never a mix, and the new one survives a crash once this
/// returns.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (tmp, dir) = temp_path(path)?;
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    // The rename is durable once the directory entry is.
    #[cfg(unix)]
    std::fs::File::open(&dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn account() -> Account {
        let mut a = Account::new("15550001111", None, Some("Tester".into()));
        a.next_device = 3;
        a.next_key_index = 4;
        a.devices.insert(
            2,
            Device {
                id: 2,
                reg: Registration {
                    noise_pub: [1; 32],
                    identity_pub: [2; 32],
                    registration_id: 77,
                    signed_pre_key: SignedPreKey {
                        id: 5,
                        public: vec![5; 33],
                        signature: vec![6; 64],
                    },
                    platform: "Linux".into(),
                },
                key_index: 3,
                linked_at: 1_700_000_000,
                pre_keys: [(10, vec![7; 33]), (11, vec![8; 33])].into_iter().collect(),
                key_shared: true,
            },
        );
        a.blocklist.insert(
            "123456789012345".into(),
            BlockedContact {
                jid: "123456789012345@lid".into(),
                pn_jid: Some("14155550123@s.whatsapp.net".into()),
                t: 1_700_000_001,
            },
        );
        a
    }

    fn saved(dir: &Path) -> (PathBuf, ServerKeys, BTreeMap<String, Account>) {
        let keys = ServerKeys::generate().unwrap();
        let accounts: BTreeMap<String, Account> = [("15550001111".to_owned(), account())]
            .into_iter()
            .collect();
        let path = dir.join("state.json");
        StateFile::capture(&accounts, &Messaging::default(), &keys)
            .write(&path)
            .unwrap();
        (path, keys, accounts)
    }

    #[test]
    fn round_trip_keeps_accounts_devices_keys_and_blocklists() {
        let dir = tempfile::tempdir().unwrap();
        let (path, keys, originals) = saved(dir.path());
        let (keys2, accounts, _) = load(&path).unwrap().unwrap().restore().unwrap();
        assert_eq!(keys2.saved(), keys.saved(), "same server identity");
        let original = originals.get("15550001111").unwrap();
        let a = accounts.get("15550001111").unwrap();
        assert_eq!(a.lid, original.lid);
        assert_eq!(a.push_name.as_deref(), Some("Tester"));
        assert_eq!(
            a.identity.public_key.public_key_bytes(),
            original.identity.public_key.public_key_bytes(),
            "the public key is derived again from the saved private key"
        );
        assert_eq!(
            a.identity.private_key.serialize(),
            original.identity.private_key.serialize()
        );
        assert_eq!(
            (a.raw_id, a.registration_id),
            (original.raw_id, original.registration_id)
        );
        assert_eq!(a.app_key.id, original.app_key.id);
        assert_eq!(a.app_key.data, original.app_key.data);
        assert_eq!((a.next_device, a.next_key_index), (3, 4));
        let d = a.devices.get(&2).unwrap();
        assert_eq!(d.reg.noise_pub, [1; 32]);
        assert_eq!(d.reg.identity_pub, [2; 32]);
        assert_eq!(d.reg.registration_id, 77);
        assert_eq!(d.reg.signed_pre_key.signature, vec![6; 64]);
        assert_eq!(d.reg.platform, "Linux");
        assert_eq!(
            (d.key_index, d.linked_at, d.key_shared),
            (3, 1_700_000_000, true)
        );
        assert_eq!(d.pre_keys.get(&11), Some(&vec![8; 33]));
        assert_eq!(a.blocklist, original.blocklist);

        // Saving what was loaded gives the same file.
        let again = dir.path().join("again.json");
        StateFile::capture(&accounts, &Messaging::default(), &keys2)
            .write(&again)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(&again).unwrap()
        );
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "private keys: owner only");
        }
    }

    #[test]
    fn a_missing_file_is_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("none.json")).unwrap().is_none());
    }

    fn corrupt(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, text).unwrap();
        let err = load(&path)
            .and_then(|f| {
                f.expect("a file")
                    .restore()
                    .map(|_| ())
                    .map_err(|reason| StateError::Corrupt {
                        path: path.display().to_string(),
                        reason,
                    })
            })
            .expect_err("refused");
        assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("state.json"), "names the file: {msg}");
        msg
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        assert!(corrupt("").contains("not a JSON object"));
        assert!(corrupt("{\"version\": 1, \"server\": ").contains("not a JSON object"));
        assert!(corrupt("[1, 2]").contains("not a JSON object"));
        assert!(corrupt("{}").contains("no \"version\" field"));
        assert!(corrupt("{\"version\": 2}").contains("format version 2"));
        assert!(corrupt("{\"version\": 1}").contains("missing field `server`"));

        // A real file, then damaged in one place at a time.
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = saved(dir.path());
        let good: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let damaged = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            edit(&mut v);
            corrupt(&v.to_string())
        };
        let msg = damaged(&|v| v["server"]["noiseKey"] = "!!!".into());
        assert!(msg.contains("invalid base64"), "{msg}");
        let msg = damaged(&|v| v["server"]["noiseKey"] = "AAAA".into());
        assert!(msg.contains("server noise key"), "{msg}");
        let msg = damaged(&|v| v["accounts"][0]["devices"][0]["noiseKey"] = "AAAA".into());
        assert!(msg.contains("device 2: noiseKey is 3 bytes"), "{msg}");
        let msg = damaged(&|v| v["accounts"][0]["phone"] = "not a phone".into());
        assert!(msg.contains("phone must be"), "{msg}");
        let msg = damaged(&|v| v["accounts"][0]["nextDevice"] = 1.into());
        assert!(msg.contains("nextDevice"), "{msg}");
        let msg = damaged(&|v| v["accounts"][0]["surprise"] = true.into());
        assert!(msg.contains("unknown field `surprise`"), "{msg}");
        let msg = damaged(&|v| {
            let a = v["accounts"][0].clone();
            v["accounts"].as_array_mut().unwrap().push(a);
        });
        assert!(msg.contains("appears twice"), "{msg}");
        let msg = damaged(&|v| v["accounts"][0]["blocklist"][0]["jid"] = "x@s.whatsapp.net".into());
        assert!(msg.contains("not a …@lid JID"), "{msg}");
    }
}
