package com.shop.order.event;

import java.util.List;

/** What a Spring order service sends: no eventId, no eventType; the type is in `__TypeId__`. */
public record OrderCreatedEvent(String orderId, List<Item> items) {}
