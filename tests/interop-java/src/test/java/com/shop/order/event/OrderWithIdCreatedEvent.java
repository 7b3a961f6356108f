package com.shop.order.event;

import java.util.List;

/** An order carrying its own event id, any string. Sent with an explicit `eventType`. */
public record OrderWithIdCreatedEvent(String eventId, String eventType, String orderId, List<Item> items) {}
