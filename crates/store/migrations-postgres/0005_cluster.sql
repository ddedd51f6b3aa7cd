-- Several gateways on one database: who is alive, and who owns which
-- session (docs/ARCHITECTURE.md, "Several gateways: exactly one owner").
--
-- A node is a gateway process (a new id per start). It is live while
-- lease_expires_at > now(): times are the database's clock, so the nodes'
-- clocks never have to agree. Its heartbeat moves the lease on.
CREATE TABLE cluster_nodes (
    id               TEXT COLLATE "C" PRIMARY KEY,
    advertise_url    TEXT NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_expires_at TIMESTAMPTZ NOT NULL,
    -- Stopping (SIGTERM): claims nothing, gives its sessions away.
    draining         BOOLEAN NOT NULL DEFAULT FALSE
);

-- The owner of a session's WhatsApp client. `epoch` is bumped by every
-- claim: a write for the session names the (owner_node, epoch) it holds
-- and changes nothing once another claim took it (fencing). owner_node
-- NULL, or a node whose lease ran out: anyone may claim it.
CREATE TABLE session_owners (
    session_id TEXT COLLATE "C" PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    owner_node TEXT COLLATE "C",
    epoch      BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX session_owners_by_node ON session_owners (owner_node);
