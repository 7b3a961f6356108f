-- Stock per product, exactly as the design says, plus what the reservation
-- saga, duplicate detection, the transactional outbox and the audit trail need.

CREATE TABLE inventory (
    id          uuid        PRIMARY KEY,
    product_id  varchar(64) NOT NULL UNIQUE,
    quantity    integer     NOT NULL CHECK (quantity >= 0),
    reserved    integer     NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    version     bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inventory_available_non_negative CHECK (quantity - reserved >= 0)
);

-- One row per order the saga has seen; status follows the domain's state machine.
CREATE TABLE reservations (
    order_id    varchar(128) PRIMARY KEY,
    status      varchar(16)  NOT NULL
                CHECK (status IN ('RESERVED', 'COMMITTED', 'RELEASED', 'FAILED', 'CANCELLED')),
    reason      varchar(32),
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    version     bigint       NOT NULL DEFAULT 0,
    CONSTRAINT reservations_active_expires CHECK ((status = 'RESERVED') = (expires_at IS NOT NULL))
);

CREATE INDEX reservations_expiry ON reservations (expires_at) WHERE status = 'RESERVED';

-- What an order holds (or held), one line per product; never changed after insert.
CREATE TABLE reservation_lines (
    order_id    varchar(128) NOT NULL REFERENCES reservations (order_id) ON DELETE CASCADE,
    product_id  varchar(64)  NOT NULL REFERENCES inventory (product_id),
    quantity    integer      NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

-- Consumed event ids, so a redelivery changes nothing; purged after a retention.
CREATE TABLE processed_events (
    event_id     uuid         PRIMARY KEY,
    order_id     varchar(128) NOT NULL,
    outcome      varchar(32)  NOT NULL,
    processed_at timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- Events to publish, written in the same transaction as the change that made them.
CREATE TABLE outbox (
    id           bigserial    PRIMARY KEY,
    event_id     uuid         NOT NULL UNIQUE,
    event_type   varchar(64)  NOT NULL,
    message_key  varchar(128) NOT NULL,
    payload      jsonb        NOT NULL,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- The audit trail of manual changes (add, audit).
CREATE TABLE stock_adjustments (
    id           bigserial    PRIMARY KEY,
    product_id   varchar(64)  NOT NULL REFERENCES inventory (product_id),
    old_quantity integer      NOT NULL,
    new_quantity integer      NOT NULL,
    delta        integer      NOT NULL,
    reason       varchar(32)  NOT NULL,
    actor        varchar(256) NOT NULL,
    note         text,
    created_at   timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX stock_adjustments_product ON stock_adjustments (product_id, id DESC);
