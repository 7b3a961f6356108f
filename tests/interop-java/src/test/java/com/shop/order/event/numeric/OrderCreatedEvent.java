package com.shop.order.event.numeric;

import java.util.List;

import com.shop.order.event.Item;

/** An order service whose ids are numbers. */
public record OrderCreatedEvent(Long orderId, List<Item> items) {}
