package com.shop.order.event;

import java.util.List;

/** Events as nested classes: `__TypeId__` is `com.shop.order.event.OrderEvents$OrderCreatedEvent`. */
public final class OrderEvents {
    private OrderEvents() {}

    public record OrderCreatedEvent(String orderId, List<Item> items) {}
}
