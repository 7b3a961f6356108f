//! Diesel's view of the tables in `migrations/`.

diesel::table! {
    inventory (id) {
        id -> Uuid,
        product_id -> Varchar,
        quantity -> Int4,
        reserved -> Int4,
        version -> Int8,
        updated_at -> Timestamptz,
        low_stock_threshold -> Nullable<Int4>,
    }
}

diesel::table! {
    reservations (order_id) {
        order_id -> Varchar,
        status -> Varchar,
        reason -> Nullable<Varchar>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        version -> Int8,
    }
}

diesel::table! {
    reservation_lines (order_id, product_id) {
        order_id -> Varchar,
        product_id -> Varchar,
        quantity -> Int4,
    }
}

diesel::table! {
    processed_events (event_id) {
        event_id -> Uuid,
        order_id -> Varchar,
        outcome -> Varchar,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        event_id -> Uuid,
        event_type -> Varchar,
        message_key -> Varchar,
        payload -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        headers -> Nullable<Jsonb>,
    }
}

diesel::table! {
    stock_adjustments (id) {
        id -> Int8,
        product_id -> Varchar,
        old_quantity -> Int4,
        new_quantity -> Int4,
        delta -> Int4,
        reason -> Varchar,
        actor -> Varchar,
        note -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (idempotency_key) {
        idempotency_key -> Varchar,
        fingerprint -> Text,
        inventory_id -> Uuid,
        product_id -> Varchar,
        quantity -> Int4,
        reserved -> Int4,
        version -> Int8,
        updated_at -> Timestamptz,
        created_at -> Timestamptz,
        low_stock_threshold -> Nullable<Int4>,
        lines -> Nullable<Jsonb>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(inventory, reservations, reservation_lines);
