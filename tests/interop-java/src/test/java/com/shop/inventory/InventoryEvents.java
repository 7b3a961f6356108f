package com.shop.inventory;

import java.time.Instant;
import java.util.List;
import java.util.UUID;

/** What a Spring consumer of the inventory topic declares (the README's records, nested in one holder). */
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

    /** Any of the four availability events (keyed by product). */
    public record InventoryAvailabilityEvent(UUID eventId, String eventType, Instant occurredAt, String causationId,
                                             String correlationId, String productId, int available, int quantity,
                                             int reserved, Integer lowStockThreshold, String cause, String actor) {}
}
