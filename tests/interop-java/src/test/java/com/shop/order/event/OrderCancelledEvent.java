package com.shop.order.event;

public record OrderCancelledEvent(String orderId) {}
