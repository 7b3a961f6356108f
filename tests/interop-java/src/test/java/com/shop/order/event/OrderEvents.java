package com.shop.order.event;

import java.util.List;

/** Services that keep their events as nested classes send `__TypeId__: com.shop.order.event.OrderEvents$OrderCreatedEvent`. */
public final class OrderEvents {
    private OrderEvents() {}

    public record OrderCreatedEvent(String orderId, List<Item> items) {}
}
