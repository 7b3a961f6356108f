package com.shop.order.event.numeric;

import java.util.List;

import com.shop.order.event.Item;

/** An order service whose order ids are database sequence numbers, serialized as JSON numbers. */
public record OrderCreatedEvent(Long orderId, List<Item> items) {}
