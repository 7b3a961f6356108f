package com.shop.order.event;

/** One order line, as the order service writes it. */
public record Item(String productId, int quantity) {}
