package com.shop.order.event;

import java.util.List;

import com.fasterxml.jackson.annotation.JsonInclude;

/**
 * The order service's event as a Spring service declares it. It names no type in its body: Spring's
 * `JsonSerializer` puts this class's name in the `__TypeId__` header, and that is all the service gets.
 * The ids are optional, as they are in the order services that send none.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record OrderCreatedEvent(String orderId, List<Item> items, String eventId, String correlationId) {
    public OrderCreatedEvent(String orderId, List<Item> items) {
        this(orderId, items, null, null);
    }
}
