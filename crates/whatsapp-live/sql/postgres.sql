-- whatsapp-rust's device state on PostgreSQL: the tables of its SQLite
-- store (whatsapp-rust-sqlite-storage 0.7.0 after all its migrations), same
-- names, columns and keys, so rows move between the two as they are
-- (`wagate db copy`). SQLite's INTEGER/BIGINT/BLOB/BOOLEAN are INTEGER/
-- BIGINT/BYTEA/BOOLEAN here, as whatsapp-rust's schema declares them. In a
-- schema of their own: `sessions` is also a gateway table.
CREATE SCHEMA IF NOT EXISTS whatsapp;
SET LOCAL search_path TO whatsapp;

CREATE TABLE IF NOT EXISTS device (
    id INTEGER PRIMARY KEY,
    lid TEXT NOT NULL,
    pn TEXT NOT NULL,
    registration_id INTEGER NOT NULL,
    noise_key BYTEA NOT NULL,
    identity_key BYTEA NOT NULL,
    signed_pre_key BYTEA NOT NULL,
    signed_pre_key_id INTEGER NOT NULL,
    signed_pre_key_signature BYTEA NOT NULL,
    adv_secret_key BYTEA NOT NULL,
    account BYTEA,
    push_name TEXT NOT NULL DEFAULT '',
    app_version_primary INTEGER NOT NULL DEFAULT 0,
    app_version_secondary INTEGER NOT NULL DEFAULT 0,
    app_version_tertiary BIGINT NOT NULL DEFAULT 0,
    app_version_last_fetched_ms BIGINT NOT NULL DEFAULT 0,
    edge_routing_info BYTEA,
    props_hash TEXT,
    next_pre_key_id INTEGER NOT NULL DEFAULT 0,
    nct_salt BYTEA,
    server_has_prekeys BOOLEAN NOT NULL DEFAULT FALSE,
    server_cert_chain BYTEA,
    login_counter INTEGER NOT NULL DEFAULT 0,
    first_unupload_pre_key_id INTEGER NOT NULL DEFAULT 0,
    lid_migrated BOOLEAN NOT NULL DEFAULT FALSE,
    last_signed_pre_key_rotation_ms BIGINT NOT NULL DEFAULT 0,
    read_receipts_disabled BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE IF NOT EXISTS identities (
    address TEXT NOT NULL,
    key BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (address, device_id)
);
CREATE INDEX IF NOT EXISTS idx_identities_device_id ON identities (device_id);

CREATE TABLE IF NOT EXISTS sessions (
    address TEXT NOT NULL,
    record BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (address, device_id)
);
CREATE INDEX IF NOT EXISTS idx_sessions_device_id ON sessions (device_id);

CREATE TABLE IF NOT EXISTS prekeys (
    id INTEGER NOT NULL,
    key BYTEA NOT NULL,
    uploaded BOOLEAN NOT NULL DEFAULT FALSE,
    device_id INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (id, device_id)
);
CREATE INDEX IF NOT EXISTS idx_prekeys_device_id ON prekeys (device_id);

CREATE TABLE IF NOT EXISTS sender_keys (
    address TEXT NOT NULL,
    record BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (address, device_id)
);
CREATE INDEX IF NOT EXISTS idx_sender_keys_device_id ON sender_keys (device_id);

CREATE TABLE IF NOT EXISTS signed_prekeys (
    id INTEGER NOT NULL,
    record BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (id, device_id)
);
CREATE INDEX IF NOT EXISTS idx_signed_prekeys_device_id ON signed_prekeys (device_id);

CREATE TABLE IF NOT EXISTS app_state_keys (
    key_id BYTEA NOT NULL,
    key_data BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (key_id, device_id)
);
CREATE INDEX IF NOT EXISTS idx_app_state_keys_device_id ON app_state_keys (device_id);

CREATE TABLE IF NOT EXISTS app_state_versions (
    name TEXT NOT NULL,
    state_data BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (name, device_id)
);
CREATE INDEX IF NOT EXISTS idx_app_state_versions_device_id ON app_state_versions (device_id);

CREATE TABLE IF NOT EXISTS app_state_mutation_macs (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    index_mac BYTEA NOT NULL,
    value_mac BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (name, index_mac, device_id)
);
CREATE INDEX IF NOT EXISTS idx_app_state_mutation_macs_device_id
    ON app_state_mutation_macs (device_id);

CREATE TABLE IF NOT EXISTS lid_pn_mapping (
    lid TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    learning_source TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    device_id INTEGER NOT NULL,
    PRIMARY KEY (lid, device_id)
);
CREATE INDEX IF NOT EXISTS idx_lid_pn_mapping_phone ON lid_pn_mapping (phone_number, device_id);

CREATE TABLE IF NOT EXISTS base_keys (
    address TEXT NOT NULL,
    message_id TEXT NOT NULL,
    base_key BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL DEFAULT (EXTRACT(EPOCH FROM now()))::integer,
    PRIMARY KEY (address, message_id, device_id)
);
CREATE INDEX IF NOT EXISTS idx_base_keys_device ON base_keys (device_id);

CREATE TABLE IF NOT EXISTS device_registry (
    user_id TEXT NOT NULL,
    devices_json TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    phash TEXT,
    device_id INTEGER NOT NULL DEFAULT 1,
    updated_at INTEGER NOT NULL DEFAULT (EXTRACT(EPOCH FROM now()))::integer,
    raw_id INTEGER,
    PRIMARY KEY (user_id, device_id)
);
CREATE INDEX IF NOT EXISTS idx_device_registry_device ON device_registry (device_id);

CREATE TABLE IF NOT EXISTS tc_tokens (
    jid TEXT NOT NULL,
    token BYTEA NOT NULL,
    token_timestamp BIGINT NOT NULL,
    sender_timestamp BIGINT,
    device_id INTEGER NOT NULL DEFAULT 1,
    updated_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now()))::bigint,
    PRIMARY KEY (jid, device_id)
);
CREATE INDEX IF NOT EXISTS idx_tc_tokens_timestamp ON tc_tokens (token_timestamp, device_id);

CREATE TABLE IF NOT EXISTS sent_messages (
    chat_jid TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now()))::bigint,
    PRIMARY KEY (chat_jid, message_id, device_id)
);
CREATE INDEX IF NOT EXISTS idx_sent_messages_created ON sent_messages (created_at, device_id);

CREATE TABLE IF NOT EXISTS sender_key_devices (
    group_jid TEXT NOT NULL,
    device_jid TEXT NOT NULL,
    has_key INTEGER NOT NULL DEFAULT 0,
    device_id INTEGER NOT NULL DEFAULT 1,
    updated_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now()))::bigint,
    PRIMARY KEY (group_jid, device_jid, device_id)
);
CREATE INDEX IF NOT EXISTS idx_sender_key_devices_group ON sender_key_devices (group_jid, device_id);

CREATE TABLE IF NOT EXISTS msg_secrets (
    chat TEXT NOT NULL,
    sender TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    secret BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now()))::bigint,
    expires_at BIGINT NOT NULL DEFAULT 0,
    message_ts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (chat, sender, msg_id, device_id)
);
CREATE INDEX IF NOT EXISTS idx_msg_secrets_expires ON msg_secrets (device_id, expires_at);

CREATE TABLE IF NOT EXISTS group_metadata (
    group_jid TEXT NOT NULL,
    info BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    updated_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now()))::bigint,
    PRIMARY KEY (group_jid, device_id)
);

CREATE TABLE IF NOT EXISTS pending_inbound_messages (
    chat TEXT NOT NULL,
    sender TEXT NOT NULL,
    id TEXT NOT NULL,
    message BYTEA NOT NULL,
    device_id INTEGER NOT NULL DEFAULT 1,
    inserted_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now()))::bigint,
    PRIMARY KEY (chat, sender, id, device_id)
);
CREATE INDEX IF NOT EXISTS idx_pending_inbound_inserted
    ON pending_inbound_messages (device_id, inserted_at);

-- Ours: which device belongs to which gateway session (as in the SQLite
-- file; its column is not called device_id, so erasing a device's rows
-- leaves it alone).
CREATE TABLE IF NOT EXISTS wagate_live_sessions (
    session_id TEXT PRIMARY KEY NOT NULL,
    device INTEGER NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

-- Several gateways on one database: a write for a session's device names
-- the claim its gateway holds (the session, the node, the epoch; the
-- gateway's table public.session_owners, migration 0005_cluster). The
-- device id goes through this function, which hands it back only while
-- the owner row still names that node at that epoch, and locks the row
-- (FOR SHARE, until the write commits) so a concurrent claim waits for the
-- write; otherwise the statement fails (SQLSTATE WG001) and changes nothing.
CREATE OR REPLACE FUNCTION whatsapp.fenced_device(
    p_device INTEGER, p_session TEXT, p_node TEXT, p_epoch BIGINT
) RETURNS INTEGER LANGUAGE plpgsql VOLATILE AS $fenced$
BEGIN
    PERFORM 1 FROM public.session_owners o
     WHERE o.session_id = p_session AND o.owner_node = p_node AND o.epoch = p_epoch
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % is not held by node % at epoch %', p_session, p_node, p_epoch
            USING ERRCODE = 'WG001';
    END IF;
    RETURN p_device;
END
$fenced$;
