-- First results of admin changes made under an Idempotency-Key, replayed on retries.
CREATE TABLE idempotency_keys (
    idempotency_key varchar(255) PRIMARY KEY,
    fingerprint     text         NOT NULL,
    inventory_id    uuid         NOT NULL,
    product_id      varchar(64)  NOT NULL,
    quantity        integer      NOT NULL,
    reserved        integer      NOT NULL,
    version         bigint       NOT NULL,
    updated_at      timestamptz  NOT NULL,
    created_at      timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
