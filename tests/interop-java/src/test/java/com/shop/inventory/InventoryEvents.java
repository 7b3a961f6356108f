package com.shop.inventory;

import java.time.Instant;
import java.util.List;
import java.util.UUID;

/** The records a Spring consumer of `inventory-events` declares (as the README shows). */
public final class InventoryEvents {
    private InventoryEvents() {}

    public record LineItem(String productId, int quantity) {}

    public record ShortLine(String productId, int requested, int available) {}

    public record InventoryReservedEvent(UUID eventId, String eventType, Instant occurredAt, String causationId,
                                         String correlationId, String orderId, List<LineItem> items) {}

    public record StockReservationFailedEvent(UUID eventId, String eventType, Instant occurredAt, String causationId,
                                              String correlationId, String orderId, String reason, String detail,
                                              List<ShortLine> items) {}

    public record InventoryReleasedEvent(UUID eventId, String eventType, Instant occurredAt, String causationId,
                                         String correlationId, String orderId, String reason, List<LineItem> items) {}
}
